"""apply(patient) against the sandbox FHIR server, on SQLite and PostgreSQL, for every target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from fhir_adapters.auth import SmartBackendAuth, generate_key
from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirAuthError, FhirFatalError
from flows.apply import apply_patient
from flows.enrolment import enrol_patient, unenrol_patient
from flows.recompute import reevaluate
from flows.runtime import Runtime, WriteTarget
from store.actions import list_actions
from store.db import session_scope
from store.enrolments import find_enrolments
from store.episode_facts import stored_episodes
from store.models import AuditEpisode, ElementResultRow
from store.results import recorded_plan, stored_plans
from tests.utils import ehr

BOOKED_AT = datetime(2026, 2, 20, 10, tzinfo=UTC)
SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 9, tzinfo=UTC)


async def seed(client: FhirClient, *resources: dict[str, Any]) -> None:
    await client.transaction(ehr.transaction(*resources))


async def booked_patient(rt: Runtime, pid: str, *, smoker: bool, hb: float = 13.5) -> None:
    await seed(rt.ehr, ehr.patient(pid), ehr.booking(pid, SURGERY, BOOKED_AT),
               ehr.smoking(pid, BOOKED_AT, current=smoker),
               ehr.haemoglobin(pid, BOOKED_AT + timedelta(days=1), hb))


async def tasks_of(client: FhirClient, pid: str) -> dict[str, dict[str, Any]]:
    found = await client.search("Task", {"patient": f"Patient/{pid}"})
    return {t["code"]["coding"][0]["code"]: t for t in found if t["resourceType"] == "Task"}


async def count(client: FhirClient, rtype: str, pid: str) -> int:
    param = "patient" if rtype == "Task" else "subject"
    return len(await client.search(rtype, {param: f"Patient/{pid}"}))


@pytest.mark.parametrize("smoker", [True, False])
async def test_apply_booked_patient_gets_pre_admission_tasks(make_runtime, new_patient_id, smoker) -> None:
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=smoker, hb=11.0)
        result = await apply_patient(rt, new_patient_id, now=NOW)
        tasks = await tasks_of(rt.ehr, new_patient_id)
    assert len(result.new_enrolments) == 1
    for element in ("patient_education", "prehabilitation", "nutrition_screening",
                    "anaemia_iron_therapy"):
        assert element in tasks, element
    assert ("smoking_cessation" in tasks) is smoker
    edu = tasks["patient_education"]
    assert edu["performerType"][0]["coding"][0]["code"] == "nurse_educator"
    assert edu["executionPeriod"]["start"].startswith("2026-03-04")  # six weeks before surgery
    assert edu["restriction"]["period"]["end"].startswith("2026-04-08")  # due a week before
    assert edu["status"] == "ready"
    assert edu["basedOn"][0]["reference"].startswith("CarePlan/")
    assert edu["for"] == {"reference": f"Patient/{new_patient_id}"}


async def test_apply_surgery_end_makes_out_of_bed_due_within_hours(make_runtime, new_patient_id) -> None:
    end = SURGERY + timedelta(hours=3)
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=False)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=3)),
                   ehr.surgery(new_patient_id, SURGERY, end))
        await apply_patient(rt, new_patient_id, now=end + timedelta(minutes=30))
        task = (await tasks_of(rt.ehr, new_patient_id))["out_of_bed_day_of_surgery"]
    due = datetime.fromisoformat(task["restriction"]["period"]["end"])
    assert timedelta(hours=4) <= due - end <= timedelta(hours=6)
    assert task["encounter"]["reference"].startswith("Encounter/")


async def test_apply_high_pain_score_opens_reassessment_within_an_hour(make_runtime, new_patient_id) -> None:
    end = SURGERY + timedelta(hours=3)
    scored = end + timedelta(hours=2)
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=False)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=3)),
                   ehr.surgery(new_patient_id, SURGERY, end), ehr.pain(new_patient_id, scored, 7))
        await apply_patient(rt, new_patient_id, now=scored + timedelta(minutes=5))
        task = (await tasks_of(rt.ehr, new_patient_id))["pain_reassessment_within_1h"]
    # Due at 30 min (escalated at 45 min); the window closes at 1 h (library/analgesia.yaml).
    assert datetime.fromisoformat(task["restriction"]["period"]["end"]) == scored + timedelta(minutes=30)
    assert task["priority"] == "urgent"


async def test_apply_twice_writes_nothing_new(make_runtime, new_patient_id) -> None:
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=True)
        first = await apply_patient(rt, new_patient_id, now=NOW)
        before = [await count(rt.ehr, kind, new_patient_id) for kind in ("Task", "CarePlan")]
        again = await apply_patient(rt, new_patient_id, now=NOW)
        after = [await count(rt.ehr, kind, new_patient_id) for kind in ("Task", "CarePlan")]
    # One batch read, one transaction, and the record read again once the enrolment is committed.
    assert first.written > 5 and first.round_trips == 3
    assert again.written == 0 and again.round_trips == 1
    assert before == after and before[1] == 1


async def test_apply_keeps_the_plan_and_the_facts_that_decided_the_results(make_runtime,
                                                                           new_patient_id) -> None:
    """What lets `eras audit recompute` leave an episode alone: the apply records the plan's
    digests beside the results, and its stored facts (the 5 min clock-skew allowance with them)
    re-evaluate, alone, to the very results stored."""
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=True)
        result = await apply_patient(rt, new_patient_id, now=NOW)
        (enrolment_id,) = result.new_enrolments
        plan = recorded_plan(rt.pathway("lumbar_fusion"), rt.tz)
        with session_scope(rt.db) as session:
            episode = session.get(AuditEpisode, enrolment_id)
            kept = stored_plans(session=session, digests=[plan.digest])
            (stored,) = stored_episodes(session=session, enrolment_ids=[enrolment_id])
            rows = {r.element_id: (r.status, r.counts) for r in session.exec(
                select(ElementResultRow).where(ElementResultRow.enrolment_id == enrolment_id))}
        again = reevaluate(rt.pathway("lumbar_fusion"), stored, rt.tz, plan).evaluation
    assert episode is not None and episode.plan_digest == plan.digest and kept == {plan.digest: plan}
    assert stored.results_from_these_facts and stored.facts["futureTolerance"] == 300
    assert len(rows) == len(again.elements) > 50
    assert {r.element_id: (r.status.value, r.counts) for r in again.elements} == rows


async def test_apply_after_lost_store_commit_creates_no_duplicates(make_runtime, new_patient_id,
                                                                   monkeypatch) -> None:
    # The transaction reached the server but the store never learnt the ids (a crash):
    # the resend is matched by the conditional creates on the business identifier.
    import flows.apply as apply_module

    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=True)

        def crash(**_: object) -> None:
            raise RuntimeError("process killed")

        monkeypatch.setattr(apply_module, "record_fhir_ids", crash)
        with pytest.raises(RuntimeError):
            await apply_patient(rt, new_patient_id, now=NOW)
        tasks = await count(rt.ehr, "Task", new_patient_id)
        monkeypatch.undo()
        resent = await apply_patient(rt, new_patient_id, now=NOW)
        assert resent.written > 0
        assert await count(rt.ehr, "Task", new_patient_id) == tasks
        assert await count(rt.ehr, "CarePlan", new_patient_id) == 1
        assert (await apply_patient(rt, new_patient_id, now=NOW)).written == 0


class FlakyTransport(httpx.AsyncBaseTransport):
    """The real server behind a proxy that answers 503 to the first `failures` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inner = httpx.AsyncHTTPTransport()
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.failures > 0:
            self.failures -= 1
            return httpx.Response(503, json={"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "transient", "diagnostics": "overloaded"}]})
        return await self.inner.handle_async_request(request)


async def test_apply_retries_503_then_applies_once(make_runtime, new_patient_id) -> None:
    async with make_runtime() as seeder:
        await booked_patient(seeder, new_patient_id, smoker=False)
    flaky = FlakyTransport(failures=2)
    async with make_runtime(transport=flaky, sleep=_no_sleep) as rt:
        result = await apply_patient(rt, new_patient_id, now=NOW)
        assert result.round_trips == 5  # 2 refused + the batch read + the transaction + read again
        assert await count(rt.ehr, "CarePlan", new_patient_id) == 1


async def _no_sleep(_: float) -> None:
    return None


async def test_client_fatal_400_carries_outcome_text_and_is_not_retried(fhir_sandbox) -> None:
    async with FhirClient(fhir_sandbox.base_url, sleep=_no_sleep) as client:
        with pytest.raises(FhirFatalError) as info:
            await client.search("Observation", {"no-such-parameter": "1"})
        assert client.round_trips == 1
    assert info.value.status == 400
    assert "no-such-parameter" in str(info.value) or info.value.outcome_text


async def test_apply_token_endpoint_down_names_the_token_url(make_runtime, new_patient_id) -> None:
    token_url = "http://127.0.0.1:9/oauth/token"  # discard port: nothing listens
    auth = SmartBackendAuth("eras-engine", generate_key("RS384"), "k1", "RS384", token_url=token_url)
    async with make_runtime(auth=auth, sleep=_no_sleep) as rt:
        with pytest.raises(FhirAuthError, match="127.0.0.1:9/oauth/token"):
            await apply_patient(rt, new_patient_id, now=NOW)


async def test_apply_fhir_store_target_writes_tasks_beside_the_ehr(make_runtime, new_patient_id) -> None:
    async with make_runtime(WriteTarget.FHIR_STORE) as rt:
        await booked_patient(rt, new_patient_id, smoker=True)
        await apply_patient(rt, new_patient_id, now=NOW)
        assert await count(rt.ehr, "Task", new_patient_id) == 0
        assert "smoking_cessation" in await tasks_of(rt.tasks, new_patient_id)
        assert (await apply_patient(rt, new_patient_id, now=NOW)).written == 0


async def test_apply_store_only_target_keeps_the_task_list_in_the_database(make_runtime,
                                                                           new_patient_id) -> None:
    async with make_runtime(WriteTarget.NONE) as rt:
        await booked_patient(rt, new_patient_id, smoker=True)
        result = await apply_patient(rt, new_patient_id, now=NOW)
        assert await count(rt.ehr, "Task", new_patient_id) == 0
        with session_scope(rt.db) as session:
            rows = list_actions(session=session, enrolment_id=result.evaluations[0].enrolment_id)
    assert result.round_trips == 2 and result.written == 0  # read, and again once enrolled
    assert {"smoking_cessation", "patient_education"} <= {r.element_id for r in rows}


async def test_enrol_explicitly_twice_is_a_no_op_and_unenrol_cancels(make_runtime, new_patient_id) -> None:
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=False)
        first, created = enrol_patient(rt, new_patient_id, "lumbar_fusion", variant="decompression",
                                       by="cli:test", now=NOW)
        again, created_again = enrol_patient(rt, new_patient_id, "lumbar_fusion", variant=None,
                                             by="cli:test", now=NOW)
        assert created and not created_again and first.id == again.id
        assert first.parameters == {"procedure_type": "decompression"}
        await apply_patient(rt, new_patient_id, now=NOW)
        assert (await tasks_of(rt.ehr, new_patient_id))["patient_education"]["status"] == "ready"
        unenrol_patient(rt, new_patient_id, "lumbar_fusion", reason="surgery cancelled", now=NOW)
        with session_scope(rt.db) as session:
            row = find_enrolments(session=session, patient_ref=f"Patient/{new_patient_id}")[0]
        assert row.status == "exited" and row.exit_reason == "surgery cancelled"
        await apply_patient(rt, new_patient_id, now=NOW + timedelta(hours=1))
        tasks = await tasks_of(rt.ehr, new_patient_id)
        plans = await rt.ehr.search("CarePlan", {"subject": f"Patient/{new_patient_id}"})
        assert (await apply_patient(rt, new_patient_id, now=NOW + timedelta(hours=2))).written == 0
    # The Hb at booking + 1 day is inside the anaemia screening window (opens 8 weeks before
    # surgery, issue 9: clin-content), so that Task was already completed; every other one is
    # cancelled, withdrawn with the reason given (clin-outcomes; tests/flows/test_withdrawal.py
    # covers messages too).
    assert {k for k, t in tasks.items() if t["status"] != "cancelled"} == {"anaemia_screening"}
    assert tasks["anaemia_screening"]["status"] == "completed"
    assert tasks["patient_education"]["statusReason"]["coding"][0]["code"] == "withdrawn"
    assert "surgery cancelled" in tasks["patient_education"]["statusReason"]["text"]
    assert [p["status"] for p in plans] == ["revoked"]
