"""The worklist API on both databases, writing back to the sandbox FHIR server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session

from fhir_adapters.sandbox import FhirSandbox
from store.models import PlannedActionRow
from tests.api.worklist.conftest import TokenFactory, bearer
from tests.utils.worklist import create_task, seed_action, seed_enrolment

CATHETER = "urinary_catheter_removal"


def _ward() -> str:
    return f"W{uuid.uuid4().hex[:6]}"


def _seed(app: FastAPI, ward: str, **kwargs: object):  # type: ignore[no-untyped-def]
    enrolment = seed_enrolment(app.state.engine, ward=ward, **kwargs)  # type: ignore[arg-type]
    app.state.seeded.append(enrolment.id)
    return enrolment


async def test_worklist_overdue_first_then_by_due(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory
) -> None:
    ward = _ward()
    enrolment = _seed(worklist_app, ward)
    now = datetime.now(UTC)
    later = seed_action(worklist_app.state.engine, enrolment, "drain_removal", due=now + timedelta(hours=2))
    overdue = seed_action(worklist_app.state.engine, enrolment, CATHETER, due=now - timedelta(hours=1))
    ahead = seed_action(
        worklist_app.state.engine,
        enrolment,
        "protein_supplementation",
        opens=now + timedelta(days=2),
        due=now + timedelta(days=3),
    )
    response = await api.get(f"/worklist?ward={ward}", headers=bearer(token(wards=(ward,))))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["key"] for i in items] == [overdue.key, later.key]
    assert ahead.key not in {i["key"] for i in items}
    first = items[0]
    assert first["status"] == "overdue"
    assert first["pod"] == 1
    assert first["instructions"].startswith("Remove the urinary catheter")
    assert first["patient_display"] == f"{ward} · Bed 3"


async def test_worklist_without_token_is_401(api: httpx.AsyncClient) -> None:
    assert (await api.get("/worklist?ward=4B")).status_code == 401
    assert (await api.get("/worklist?ward=4B", headers=bearer("not-a-jwt"))).status_code == 401


async def test_worklist_other_ward_is_403_and_audited(api: httpx.AsyncClient, token: TokenFactory) -> None:
    response = await api.get("/worklist?ward=9Z", headers=bearer(token(wards=("4B",))))
    assert response.status_code == 403
    audit = await api.get("/admin/audit", headers=bearer(token("admin.a", ("admin",), ())))
    assert any(e["resource"] == "ward/9Z" and e["outcome"] == "denied" for e in audit.json())


async def test_audit_for_nurse_is_403(api: httpx.AsyncClient, token: TokenFactory) -> None:
    assert (await api.get("/admin/audit", headers=bearer(token()))).status_code == 403


async def test_complete_writes_task_and_evidence(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory, fhir_sandbox: FhirSandbox
) -> None:
    ward = _ward()
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    enrolment = _seed(worklist_app, ward, patient_id=pid)
    task = create_task(fhir_sandbox.base_url, pid)
    action = seed_action(
        worklist_app.state.engine,
        enrolment,
        CATHETER,
        due=datetime.now(UTC),
        fhir_id=task["id"],
        fhir_version=task["meta"]["versionId"],
    )
    response = await api.post(
        f"/worklist/{action.key}/complete", json={}, headers=bearer(token(wards=(ward,)))
    )
    assert response.status_code == 200
    stored = httpx.get(f"{fhir_sandbox.base_url}/Task/{task['id']}").json()
    assert stored["status"] == "completed"
    evidence = httpx.get(f"{fhir_sandbox.base_url}/Procedure", params={"subject": f"Patient/{pid}"}).json()
    codes = [e["resource"]["code"]["coding"][0]["code"] for e in evidence.get("entry", [])]
    assert codes == ["urinary-catheter-removed"]
    with Session(worklist_app.state.engine) as session:
        row = session.get(PlannedActionRow, action.key)
        assert row is not None and row.status == "done" and row.completed_by == "nurse.a"
        assert row.fhir_version == stored["meta"]["versionId"]


async def test_worklist_labels_a_closed_window_and_completion_as_done_late(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory, fhir_sandbox: FhirSandbox
) -> None:
    # Catheter removal due 3 h ago, its window closed 1 h ago (not yet re-evaluated): the nurse
    # sees it as late, and completing it now is recorded as done late, not done.
    ward = _ward()
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    enrolment = _seed(worklist_app, ward, patient_id=pid)
    task = create_task(fhir_sandbox.base_url, pid)
    now = datetime.now(UTC)
    late = seed_action(worklist_app.state.engine, enrolment, CATHETER, due=now - timedelta(hours=3),
                       closes=now - timedelta(hours=1), status="overdue", fhir_id=task["id"],
                       fhir_version=task["meta"]["versionId"])
    on_time = seed_action(worklist_app.state.engine, enrolment, "drain_removal",
                          due=now - timedelta(hours=1), closes=now + timedelta(hours=1),
                          status="overdue")
    headers = bearer(token(wards=(ward,)))
    items = {i["key"]: i for i in (await api.get(f"/worklist?ward={ward}", headers=headers)).json()["items"]}
    assert (items[late.key]["status"], items[on_time.key]["status"]) == ("late", "overdue")
    response = await api.post(f"/worklist/{late.key}/complete", json={}, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "done-late"
    with Session(worklist_app.state.engine) as session:
        row = session.get(PlannedActionRow, late.key)
        assert row is not None and row.status == "done-late"


async def test_decline_cancels_task_with_reason(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory, fhir_sandbox: FhirSandbox
) -> None:
    ward = _ward()
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    enrolment = _seed(worklist_app, ward, patient_id=pid)
    task = create_task(fhir_sandbox.base_url, pid)
    action = seed_action(
        worklist_app.state.engine,
        enrolment,
        CATHETER,
        due=datetime.now(UTC),
        fhir_id=task["id"],
        fhir_version=task["meta"]["versionId"],
    )
    response = await api.post(
        f"/worklist/{action.key}/decline",
        json={"reason": "patient-refused", "text": "asleep"},
        headers=bearer(token(wards=(ward,))),
    )
    assert response.status_code == 200
    stored = httpx.get(f"{fhir_sandbox.base_url}/Task/{task['id']}").json()
    assert stored["status"] == "cancelled"
    assert stored["statusReason"]["coding"][0]["code"] == "patient-refused"
    assert response.json()["status"] == "declined"


async def test_complete_after_ehr_change_is_409_and_not_overwritten(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory, fhir_sandbox: FhirSandbox
) -> None:
    ward = _ward()
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    enrolment = _seed(worklist_app, ward, patient_id=pid)
    task = create_task(fhir_sandbox.base_url, pid)
    action = seed_action(
        worklist_app.state.engine,
        enrolment,
        CATHETER,
        due=datetime.now(UTC),
        fhir_id=task["id"],
        fhir_version=task["meta"]["versionId"],
    )
    changed = {**task, "status": "on-hold"}
    httpx.put(f"{fhir_sandbox.base_url}/Task/{task['id']}", json=changed).raise_for_status()
    response = await api.post(
        f"/worklist/{action.key}/complete", json={}, headers=bearer(token(wards=(ward,)))
    )
    assert response.status_code == 409
    assert "changed in the EHR" in response.json()["detail"]
    assert httpx.get(f"{fhir_sandbox.base_url}/Task/{task['id']}").json()["status"] == "on-hold"
    with Session(worklist_app.state.engine) as session:
        row = session.get(PlannedActionRow, action.key)
        assert row is not None and row.status == "due"


async def test_reassign_changes_role(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory
) -> None:
    ward = _ward()
    enrolment = _seed(worklist_app, ward)
    action = seed_action(worklist_app.state.engine, enrolment, CATHETER, due=datetime.now(UTC))
    response = await api.post(
        f"/worklist/{action.key}/reassign",
        json={"role": "physiotherapist"},
        headers=bearer(token(wards=(ward,))),
    )
    assert response.status_code == 200
    assert response.json()["role"] == "physiotherapist"
    listed = await api.get(f"/worklist?ward={ward}&role=nurse", headers=bearer(token(wards=(ward,))))
    assert listed.json()["items"] == []


# The five decline reasons pathways/README.md documents as shipped (terminology/default.yaml).
DOCUMENTED_REASONS = ("patient-refused", "contraindicated", "not-applicable", "deferred-by-clinician",
                      "patient-unavailable")


async def test_decline_accepts_every_documented_reason_and_refuses_others(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory
) -> None:
    ward = _ward()
    enrolment = _seed(worklist_app, ward)
    nurse = bearer(token(wards=(ward,)))
    for reason in DOCUMENTED_REASONS:
        action = seed_action(worklist_app.state.engine, enrolment, "drain_removal", due=None)
        response = await api.post(f"/worklist/{action.key}/decline", json={"reason": reason}, headers=nurse)
        assert (reason, response.status_code, response.json()["status"]) == (reason, 200, "declined")
    action = seed_action(worklist_app.state.engine, enrolment, "drain_removal", due=None)
    made_up = await api.post(f"/worklist/{action.key}/decline", json={"reason": "whim"}, headers=nurse)
    assert made_up.status_code == 422
    page = (await api.get("/ui/worklist")).text
    assert all(f'value="{reason}"' in page for reason in DOCUMENTED_REASONS)


def _patient_request(base_url: str, patient_id: str) -> dict[str, Any]:
    """An active CommunicationRequest to the patient (an ODI questionnaire) on the FHIR server."""
    request = {"resourceType": "CommunicationRequest", "status": "active",
               "subject": {"reference": f"Patient/{patient_id}"},
               "payload": [{"contentString": "Please complete the ODI questionnaire"}]}
    response = httpx.post(f"{base_url}/CommunicationRequest", json=request)
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return created


@pytest.mark.parametrize(("verb", "body", "ehr_status", "store_status"), [
    ("complete", {}, "completed", "done"),
    ("decline", {"reason": "patient-unavailable"}, "revoked", "declined"),
    ("reassign", {"role": "charge_nurse"}, "active", None),  # no performer role to give: 409
])
async def test_communication_request_item_completed_or_declined_in_the_ehr(
    worklist_app: FastAPI, api: httpx.AsyncClient, token: TokenFactory, fhir_sandbox: FhirSandbox,
    verb: str, body: dict[str, str], ehr_status: str, store_status: str | None,
) -> None:
    ward = _ward()
    pid = f"pt-{uuid.uuid4().hex[:10]}"
    enrolment = _seed(worklist_app, ward, patient_id=pid)
    request = _patient_request(fhir_sandbox.base_url, pid)
    action = seed_action(worklist_app.state.engine, enrolment, "drain_removal", due=None, role="nurse",
                         fhir_id=request["id"], fhir_version=request["meta"]["versionId"])
    with Session(worklist_app.state.engine) as session:
        row = session.get(PlannedActionRow, action.key)
        assert row is not None
        row.fhir_type = "CommunicationRequest"
        session.add(row)
        session.commit()
    nurse = bearer(token(wards=(ward,)))
    response = await api.post(f"/worklist/{action.key}/{verb}", json=body, headers=nurse)
    if store_status is None:
        assert response.status_code == 409
    else:
        assert (response.status_code, response.json()["status"]) == (200, store_status)
    stored = httpx.get(f"{fhir_sandbox.base_url}/CommunicationRequest/{request['id']}").json()
    assert stored["status"] == ehr_status
    if verb == "decline":
        assert stored["statusReason"]["coding"][0]["code"] == "patient-unavailable"


@pytest.mark.parametrize("window", ["99999999d", "32d", "745h", "-1h", "1y"])
async def test_worklist_absurd_window_is_422_not_500(api: httpx.AsyncClient, token: TokenFactory,
                                                     window: str) -> None:
    response = await api.get(f"/worklist?ward=4B&window={window}", headers=bearer(token()))
    assert response.status_code == 422
