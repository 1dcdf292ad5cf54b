"""Withdrawal is complete: when a patient is unenrolled (surgery cancelled), every open Task is
cancelled and every open CommunicationRequest (patient message) revoked with the reason given,
the CarePlan is revoked with it, and nothing stays pending in the store. Against the sandbox
FHIR server, on SQLite and PostgreSQL, for both FHIR write targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fhir_adapters.client import FhirClient
from flows.apply import apply_patient
from flows.enrolment import unenrol_patient
from flows.runtime import WriteTarget
from store.actions import list_actions, pending_fhir_writes
from store.db import session_scope
from store.enrolments import find_enrolments
from tests.utils import ehr

BOOKED_AT = datetime(2026, 2, 20, 10, tzinfo=UTC)
SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
# 10 March: the pre-admission Tasks are open, and so is the ODI baseline questionnaire message
# (a patient message open from 90 days before surgery, i.e. from 15 January).
NOW = datetime(2026, 3, 10, 9, tzinfo=UTC)
REASON = "surgery cancelled: patient chose conservative care"


async def mine(client: FhirClient, rtype: str, pid: str) -> list[dict[str, Any]]:
    param = "patient" if rtype == "Task" else "subject"
    return [r for r in await client.search(rtype, {param: f"Patient/{pid}"}) if r["resourceType"] == rtype]


@pytest.mark.parametrize("target", [WriteTarget.EHR, WriteTarget.FHIR_STORE])
async def test_withdrawal_cancels_tasks_revokes_messages_and_careplan(make_runtime, new_patient_id,
                                                                      target) -> None:
    pid = new_patient_id
    async with make_runtime(target) as rt:
        await rt.ehr.transaction(ehr.transaction(ehr.patient(pid), ehr.booking(pid, SURGERY, BOOKED_AT)))
        await apply_patient(rt, pid, now=NOW)
        assert rt.tasks is not None
        messages = await mine(rt.tasks, "CommunicationRequest", pid)
        assert [m["status"] for m in messages] == ["active"]           # the ODI baseline message
        assert {t["status"] for t in await mine(rt.tasks, "Task", pid)} <= {"ready", "requested"}

        unenrol_patient(rt, pid, "lumbar_fusion", reason=REASON, now=NOW + timedelta(minutes=5))
        await apply_patient(rt, pid, now=NOW + timedelta(hours=1))
        tasks = await mine(rt.tasks, "Task", pid)
        messages = await mine(rt.tasks, "CommunicationRequest", pid)
        plans = await mine(rt.tasks, "CarePlan", pid)
        again = await apply_patient(rt, pid, now=NOW + timedelta(hours=2))
        with session_scope(rt.db) as session:
            enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
            pending = pending_fhir_writes(session=session, enrolment_id=enrolment.id)
            statuses = {a.status for a in list_actions(session=session, enrolment_id=enrolment.id)}
    assert tasks and {t["status"] for t in tasks} == {"cancelled"}
    for resource in (*tasks, *messages):
        assert resource["statusReason"]["coding"][0]["code"] == "withdrawn"
        assert REASON in resource["statusReason"]["text"]
    assert [m["status"] for m in messages] == ["revoked"]
    assert [p["status"] for p in plans] == ["revoked"]
    assert REASON in plans[0]["note"][0]["text"] and plans[0]["period"]["end"]
    assert again.written == 0 and pending == []                      # nothing pending for ever
    assert statuses == {"cancelled"}


async def _booked_then_revoked(rt, pid: str, *also: dict) -> dict:  # type: ignore[no-untyped-def]
    """Booked and applied at NOW; then the booking revoked in the EHR (with `also` entries)."""
    await rt.ehr.transaction(ehr.transaction(ehr.patient(pid), ehr.booking(pid, SURGERY, BOOKED_AT)))
    await apply_patient(rt, pid, now=NOW)
    booking = (await rt.ehr.search("ServiceRequest", {"subject": f"Patient/{pid}"}))[0]
    await rt.ehr.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**booking, "status": "revoked"},
         "request": {"method": "PUT", "url": f"ServiceRequest/{booking['id']}"}}, *also]})
    return dict(booking)


async def test_withdrawal_when_the_booking_is_revoked_in_the_record(make_runtime, new_patient_id) -> None:
    pid = new_patient_id
    async with make_runtime() as rt:
        booking = await _booked_then_revoked(rt, pid)
        await apply_patient(rt, pid, now=NOW + timedelta(hours=1))
        tasks = await mine(rt.ehr, "Task", pid)
        messages = await mine(rt.ehr, "CommunicationRequest", pid)
        plans = await mine(rt.ehr, "CarePlan", pid)
        with session_scope(rt.db) as session:
            enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
    reason = f"surgery cancelled (ServiceRequest/{booking['id']} revoked)"
    assert (enrolment.status, enrolment.exit_reason) == ("exited", reason)
    assert {t["status"] for t in tasks} == {"cancelled"} and [m["status"] for m in messages] == ["revoked"]
    assert all(reason in r["statusReason"]["text"] for r in (*tasks, *messages))
    assert [p["status"] for p in plans] == ["revoked"]


async def test_withdrawal_not_when_rebooked(make_runtime, new_patient_id) -> None:
    pid = new_patient_id
    async with make_runtime() as rt:
        await _booked_then_revoked(rt, pid, {
            "resource": ehr.booking(pid, SURGERY + timedelta(days=14), NOW),
            "request": {"method": "POST", "url": "ServiceRequest"}})
        await apply_patient(rt, pid, now=NOW + timedelta(hours=1))
        with session_scope(rt.db) as session:
            enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
    assert enrolment.status == "active"


async def test_episode_scope_an_operation_years_ago_does_not_enrol(make_runtime, new_patient_id) -> None:
    # A completed spinal fusion from 2019, nothing booked now: no episode, no enrolment.
    pid = new_patient_id
    old = datetime(2019, 6, 3, 9, tzinfo=UTC)
    async with make_runtime() as rt:
        await rt.ehr.transaction(ehr.transaction(ehr.patient(pid),
                                                 ehr.surgery(pid, old, old + timedelta(hours=4))))
        result = await apply_patient(rt, pid, now=NOW)
        assert result.new_enrolments == ()
        await rt.ehr.transaction(ehr.transaction(ehr.booking(pid, SURGERY, NOW)))
        result = await apply_patient(rt, pid, now=NOW + timedelta(hours=1))
        with session_scope(rt.db) as session:
            enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
    assert len(result.new_enrolments) == 1
    assert enrolment.enrolled_by.startswith("auto:ServiceRequest/")   # the booking, not the 2019 operation
