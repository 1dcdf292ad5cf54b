"""Engine → EHR resources: Task status mapping, CarePlan, reminders, cancellation and the transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from engine.results import PlannedAction, Status
from fhir_adapters.facts import parse_resource, task_state
from fhir_adapters.valuesets import InvalidFhirCode
from fhir_adapters.writeback import (
    CodeSystems,
    Write,
    activity_canonical,
    cancel_task,
    careplan_for,
    communication_request_for,
    local_reference,
    task_for,
    transaction_for,
    withdraw,
)

NOW = datetime(2024, 3, 1, 8, tzinfo=UTC)
CANONICAL = "http://eras.example/fhir/PlanDefinition/lumbar-fusion|3"
TASK_SYSTEM = "http://eras.example/task"
PLAN_SYSTEM = "http://eras.example/enrolment"
CODES = CodeSystems()
ACTION = PlannedAction(
    key="e1:pc6_band:0", element_id="pc6_band", occurrence="0", kind="task", role="recovery_nurse",
    priority="routine", title="PC6 acupressure bands", instructions="Apply both bands.",
    status=Status.DUE, opens=NOW, due=NOW + timedelta(hours=1), closes=NOW + timedelta(hours=4),
    remind_at=NOW + timedelta(minutes=30))


def make_task(action: PlannedAction = ACTION, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(patient_id="p1", encounter_id="enc1", careplan_ref="CarePlan/cp1",
                                pathway_canonical=CANONICAL, identifier_system=TASK_SYSTEM, now=NOW)
    return task_for(action, **{**args, **extra})


def make_careplan(**extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(patient_id="p1", encounter_id="enc1", enrolment_id="e1", enrolled_at=NOW,
                                pathway_canonical=CANONICAL, identifier_system=PLAN_SYSTEM,
                                task_refs=["Task/t1"], title="Lumbar fusion ERAS", now=NOW)
    return careplan_for(**{**args, **extra})


def assert_valid_r4(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


STATUS_ROWS = [
    (Status.UPCOMING, None, "requested", None),
    (Status.DUE, None, "ready", None),
    (Status.OVERDUE, None, "ready", None),
    (Status.DONE, None, "completed", None),
    (Status.DONE_LATE, None, "completed", None),  # completed; businessStatus says done-late
    (Status.DECLINED, "patient-refused", "cancelled", "patient-refused"),
    (Status.MISSED, None, "failed", "window-closed"),
    (Status.NOT_APPLICABLE, None, "cancelled", "not-applicable"),
]


@pytest.mark.parametrize(("status", "decline", "task_status", "reason"), STATUS_ROWS)
def test_task_for_status_mapping(status: Status, decline: str | None, task_status: str,
                                 reason: str | None) -> None:
    task = make_task(ACTION._replace(status=status, decline_reason=decline))
    assert_valid_r4(task)
    assert task["status"] == task_status
    assert task["businessStatus"] == {"coding": [{"system": CODES.business_status, "code": status.value}]}
    got_reason = task.get("statusReason", {}).get("coding", [{}])[0].get("code")
    assert got_reason == reason


def test_task_for_fields() -> None:
    task = make_task()
    assert task["identifier"] == [{"system": TASK_SYSTEM, "value": "e1:pc6_band:0"}]
    assert task["intent"] == "order" and task["priority"] == "routine"
    assert task["code"]["coding"] == [{"system": CODES.element, "code": "pc6_band",
                                       "display": "PC6 acupressure bands"}]
    assert task["description"] == "Apply both bands."
    assert task["for"] == {"reference": "Patient/p1"}
    assert task["encounter"] == {"reference": "Encounter/enc1"}
    assert task["basedOn"] == [{"reference": "CarePlan/cp1"}]
    assert task["instantiatesCanonical"] == (
        "http://eras.example/fhir/ActivityDefinition/lumbar-fusion-pc6-band|3")
    # no end: executionPeriod.end is read back as the completion time (done late after close)
    assert task["executionPeriod"] == {"start": "2024-03-01T08:00:00+00:00"}
    assert task["restriction"] == {"period": {"start": "2024-03-01T08:00:00+00:00",
                                              "end": "2024-03-01T09:00:00+00:00"}}
    assert task["performerType"] == [{"coding": [{"system": CODES.role, "code": "recovery_nurse"}],
                                      "text": "recovery nurse"}]
    assert task["authoredOn"] == task["lastModified"] == "2024-03-01T08:00:00+00:00"


def test_task_for_update_keeps_authored_on() -> None:
    task = make_task(now=NOW + timedelta(hours=2), authored_on=NOW)
    assert (task["authoredOn"], task["lastModified"]) == ("2024-03-01T08:00:00+00:00",
                                                          "2024-03-01T10:00:00+00:00")


def test_task_for_declined_reads_back_as_the_decline() -> None:
    task = make_task(ACTION._replace(status=Status.DECLINED, decline_reason="patient-refused"))
    state = task_state(parse_resource({**task, "id": "t1"}), TASK_SYSTEM)
    assert state is not None
    assert (state.action_key, state.status, state.reason) == ("e1:pc6_band:0", "cancelled", "patient-refused")


def test_task_for_naive_time_raises() -> None:
    with pytest.raises(ValueError, match="time zone"):
        make_task(now=datetime(2024, 3, 1, 8))


def test_activity_canonical_rejects_non_plan_definition() -> None:
    with pytest.raises(ValueError, match="PlanDefinition"):
        activity_canonical("http://eras.example/fhir/Questionnaire/x|1", "pc6_band")


def test_careplan_for_fields() -> None:
    plan = make_careplan()
    assert_valid_r4(plan)
    assert (plan["status"], plan["intent"]) == ("active", "plan")
    assert plan["instantiatesCanonical"] == [CANONICAL]
    assert plan["identifier"] == [{"system": PLAN_SYSTEM, "value": "e1"}]
    assert plan["subject"] == {"reference": "Patient/p1"}
    assert plan["period"] == {"start": "2024-03-01T08:00:00+00:00"}
    assert plan["activity"] == [{"reference": {"reference": "Task/t1"}}]


def test_careplan_for_ended_enrolment_is_completed() -> None:
    plan = make_careplan(ended_at=NOW + timedelta(days=3), task_refs=[])
    assert plan["status"] == "completed" and "activity" not in plan
    assert plan["period"]["end"] == "2024-03-04T08:00:00+00:00"


def test_careplan_for_withdrawn_enrolment_is_revoked_with_the_reason() -> None:
    plan = make_careplan(ended_at=NOW + timedelta(days=3), withdrawn="surgery cancelled")
    assert_valid_r4(plan)
    assert plan["status"] == "revoked"
    assert plan["note"] == [{"time": "2024-03-04T08:00:00+00:00",
                             "text": "Withdrawn from the pathway: surgery cancelled"}]


def test_communication_request_for_reminder_about_task() -> None:
    request = communication_request_for(ACTION, patient_id="p1", encounter_id="enc1",
                                        identifier_system=TASK_SYSTEM, now=NOW, task_ref="Task/t1",
                                        recipient="PractitionerRole/r1")
    assert_valid_r4(request)
    assert request["identifier"] == [{"system": TASK_SYSTEM, "value": "e1:pc6_band:0:reminder"}]
    assert request["status"] == "active"
    assert request["category"][0]["coding"] == [{"system": CODES.role, "code": "recovery_nurse"}]
    assert request["about"] == [{"reference": "Task/t1"}]
    assert request["recipient"] == [{"reference": "PractitionerRole/r1"}]
    assert request["occurrenceDateTime"] == "2024-03-01T08:30:00+00:00"


def test_communication_request_for_patient_message() -> None:
    action = ACTION._replace(kind="patient-message", role="patient", status=Status.UPCOMING)
    request = communication_request_for(action, patient_id="p1", encounter_id=None,
                                        identifier_system=TASK_SYSTEM, now=NOW)
    assert_valid_r4(request)
    assert request["identifier"][0]["value"] == "e1:pc6_band:0"
    assert request["recipient"] == [{"reference": "Patient/p1"}]
    assert request["payload"] == [{"contentString": "Apply both bands."}]


def test_communication_request_for_closed_action_is_revoked() -> None:
    request = communication_request_for(ACTION._replace(status=Status.DONE), patient_id="p1",
                                        encounter_id=None, identifier_system=TASK_SYSTEM, now=NOW)
    assert request["status"] == "revoked"


def test_cancel_task_sets_status_and_reason() -> None:
    task = {**make_task(), "id": "t1", "meta": {"versionId": "2"}}
    later = NOW + timedelta(hours=1)
    cancelled = cancel_task(task, "not-applicable", "no longer applies", now=later)
    assert_valid_r4(cancelled)
    assert cancelled["status"] == "cancelled"
    assert cancelled["statusReason"] == {"coding": [{"system": CODES.reason, "code": "not-applicable"}],
                                         "text": "no longer applies"}
    assert cancelled["lastModified"] == "2024-03-01T09:00:00+00:00"
    assert task["status"] == "ready"  # the input is left as it was


def test_cancel_task_completed_raises() -> None:
    with pytest.raises(ValueError, match="completed and cannot be cancelled"):
        cancel_task({**make_task(), "id": "t1", "status": "completed"}, "x", "x", now=NOW)


def test_transaction_for_creates_new_and_updates_known() -> None:
    plan_ref = local_reference(PLAN_SYSTEM, "e1")
    new_task = make_task(careplan_ref=plan_ref)
    plan = make_careplan(task_refs=[local_reference(TASK_SYSTEM, ACTION.key), "Task/t9"])
    known = make_task(ACTION._replace(key="e1:pc6_band:1", occurrence="1"), careplan_ref=plan_ref)
    bundle = transaction_for("p1", [Write(plan), Write(new_task), Write(known, id="t9", version="4")])
    assert_valid_r4(bundle)
    assert bundle["type"] == "transaction"
    plan_entry, task_entry, known_entry = bundle["entry"]
    assert plan_entry["fullUrl"] == plan_ref
    assert plan_entry["request"] == {"method": "POST", "url": "CarePlan",
                                     "ifNoneExist": f"identifier={PLAN_SYSTEM}|e1"}
    assert task_entry["fullUrl"] == local_reference(TASK_SYSTEM, ACTION.key)
    assert task_entry["request"]["ifNoneExist"] == f"identifier={TASK_SYSTEM}|e1:pc6_band:0"
    assert task_entry["resource"]["basedOn"] == [{"reference": plan_ref}]
    assert plan_entry["resource"]["activity"][0]["reference"]["reference"] == task_entry["fullUrl"]
    assert known_entry["request"] == {"method": "PUT", "url": "Task/t9", "ifMatch": 'W/"4"'}
    assert known_entry["resource"]["id"] == "t9" and "fullUrl" not in known_entry


def test_local_reference_is_stable_and_distinct() -> None:
    assert local_reference(TASK_SYSTEM, "a") == local_reference(TASK_SYSTEM, "a")
    assert local_reference(TASK_SYSTEM, "a") != local_reference(TASK_SYSTEM, "b")
    assert local_reference(TASK_SYSTEM, "a").startswith("urn:uuid:")


def test_transaction_for_bad_status_raises_before_any_write() -> None:
    bad = {**make_task(), "status": "bogus"}
    with pytest.raises(InvalidFhirCode) as caught:
        transaction_for("p1", [Write(bad)])
    assert caught.value.path == "Bundle.entry[0].resource.status"
    assert "requested" in str(caught.value)


def test_transaction_for_known_without_version_raises() -> None:
    with pytest.raises(ValueError, match="If-Match"):
        transaction_for("p1", [Write(make_task(), id="t9")])


def test_transaction_for_other_patient_raises() -> None:
    with pytest.raises(ValueError, match="not about Patient/p2"):
        transaction_for("p2", [Write(make_task())])


def test_transaction_for_new_resource_without_identifier_raises() -> None:
    task = {k: v for k, v in make_task().items() if k != "identifier"}
    with pytest.raises(ValueError, match="business identifier"):
        transaction_for("p1", [Write(task)])


def test_withdraw_revokes_an_open_message_with_the_reason() -> None:
    message = communication_request_for(ACTION._replace(kind="patient-message", role="patient"),
                                        patient_id="p1", encounter_id=None,
                                        identifier_system=TASK_SYSTEM, now=NOW)
    revoked = withdraw({**message, "id": "m1"}, "withdrawn", "withdrawn from the pathway: x", now=NOW)
    assert_valid_r4(revoked)
    assert revoked["status"] == "revoked"
    assert revoked["statusReason"]["coding"][0]["code"] == "withdrawn"
    assert message["status"] == "active"  # the input is left as it was


def test_withdraw_cancels_an_open_task() -> None:
    assert withdraw({**make_task(), "id": "t1"}, "withdrawn", "x", now=NOW)["status"] == "cancelled"


@pytest.mark.parametrize("status", ["completed", "revoked", "entered-in-error"])
def test_withdraw_finished_message_raises(status: str) -> None:
    message = communication_request_for(ACTION, patient_id="p1", encounter_id=None,
                                        identifier_system=TASK_SYSTEM, now=NOW)
    with pytest.raises(ValueError, match="cannot be revoked"):
        withdraw({**message, "id": "m1", "status": status}, "withdrawn", "x", now=NOW)
