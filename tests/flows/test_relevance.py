"""A hospital's whole feed: events that concern no enrolled patient and cannot enrol one are
settled at drain time without a single request to the EHR (counted at the EHR itself);
a booking still enrols a new patient and an enrolled patient's fact still applies; an event
dropped while the patient's enrolling apply is in flight is still read once they are enrolled."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from fhir_adapters.inbox_events import inbox_event_for_resource
from flows.apply import apply_patient
from flows.drain import DrainResult, drain_once
from flows.runtime import Runtime
from store.db import session_scope
from store.enrolments import find_enrolments
from store.inbox import store_event
from store.models import InboxEvent
from tests.flows.test_apply import NOW, SURGERY, booked_patient, seed, tasks_of
from tests.utils import ehr
from tests.utils.counting_sandbox import CountingSandbox
from tests.utils.notifications import clear_intake_tables


@pytest.fixture(scope="module")
def counting_ehr() -> Iterator[CountingSandbox]:
    with CountingSandbox() as sandbox:
        yield sandbox


async def drain_events(rt: Runtime, *resources: dict) -> tuple[DrainResult, list[InboxEvent]]:
    """Store one inbox event per resource (as a rest-hook delivers them) and drain one batch."""
    clear_intake_tables(rt.db)
    with session_scope(rt.db) as session:
        for resource in resources:
            store_event(session=session, event=inbox_event_for_resource(resource, source="feed"), at=NOW)
    result = await drain_once(rt, worker="test", now=NOW)
    with session_scope(rt.db) as session:
        events = list(session.exec(select(InboxEvent)).all())
    clear_intake_tables(rt.db)
    return result, events


async def test_an_unenrolled_patients_observation_and_stay_cost_no_ehr_request(
        make_runtime, counting_ehr, new_patient_id) -> None:
    async with make_runtime(base_url=counting_ehr.base_url) as rt:
        rt = dataclasses.replace(rt, clock=lambda: NOW)
        pain = await rt.ehr.create(ehr.pain(new_patient_id, NOW, 7))
        stay = await rt.ehr.create(ehr.stay(new_patient_id, NOW - timedelta(hours=2)))
        before = await counting_ehr.requests_settled()
        result, events = await drain_events(rt, pain, stay)
        served = await counting_ehr.requests_settled() - before - 1  # less the second probe
        with session_scope(rt.db) as session:
            enrolments = find_enrolments(session=session, patient_ref=f"Patient/{new_patient_id}")
    assert served == 0
    assert (result.claimed, result.irrelevant, result.patients) == (2, 2, 0)
    assert [e.status for e in events] == ["done", "done"]
    assert enrolments == []


async def test_a_booking_for_a_new_patient_still_enrols(make_runtime, counting_ehr, new_patient_id) -> None:
    async with make_runtime(base_url=counting_ehr.base_url) as rt:
        rt = dataclasses.replace(rt, clock=lambda: NOW)
        await seed(rt.ehr, ehr.patient(new_patient_id))
        booking = await rt.ehr.create(ehr.booking(new_patient_id, SURGERY, NOW - timedelta(days=1)))
        result, events = await drain_events(rt, booking)
        with session_scope(rt.db) as session:
            enrolments = find_enrolments(session=session, patient_ref=f"Patient/{new_patient_id}")
        tasks = await tasks_of(rt.ehr, new_patient_id)
    assert (result.irrelevant, result.applied) == (0, [new_patient_id])
    assert [e.status for e in events] == ["done"]
    assert [e.pathway_id for e in enrolments] == ["lumbar_fusion"]
    assert tasks  # the pre-admission work is written out


async def test_an_enrolled_patients_observation_still_applies(make_runtime, counting_ehr,
                                                             new_patient_id) -> None:
    """NRS 7 on the ward after surgery: the reassessment within 1 h (clinical.md, analgesia)."""
    async with make_runtime(base_url=counting_ehr.base_url) as rt:
        after_surgery = SURGERY + timedelta(hours=5)
        rt = dataclasses.replace(rt, clock=lambda: after_surgery)
        await booked_patient(rt, new_patient_id, smoker=False)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=2)),
                   ehr.surgery(new_patient_id, SURGERY, SURGERY + timedelta(hours=3)))
        await apply_patient(rt, new_patient_id)  # enrolled, before the event
        assert "pain_reassessment_within_1h" not in await tasks_of(rt.ehr, new_patient_id)
        pain = await rt.ehr.create(ehr.pain(new_patient_id, after_surgery, 7))
        result, events = await drain_events(rt, pain)
        tasks = await tasks_of(rt.ehr, new_patient_id)
    assert (result.irrelevant, result.applied) == (0, [new_patient_id])
    assert [e.status for e in events] == ["done"]
    assert "pain_reassessment_within_1h" in tasks


async def test_an_event_dropped_while_the_enrolling_apply_is_in_flight_is_read_once_enrolled(
        make_runtime, api: httpx.AsyncClient, monkeypatch, new_patient_id) -> None:
    """The apply that enrols the patient has read the record; then an NRS 7 is written and its
    notification arrives: the patient has no enrolment yet, so the intake stores it done, unread.
    The enrolment commits after. The apply reads the record again once enrolled, so the score
    still gets its reassessment within 1 h (clinical.md, analgesia)."""
    after_surgery = SURGERY + timedelta(hours=5)
    async with make_runtime() as rt:
        rt = dataclasses.replace(rt, clock=lambda: after_surgery)
        await booked_patient(rt, new_patient_id, smoker=False)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=2)),
                   ehr.surgery(new_patient_id, SURGERY, SURGERY + timedelta(hours=3)))
        read, scored = rt.ehr.batch, []

        async def read_then_score(request: dict[str, Any]) -> dict[str, Any]:
            response = await read(request)
            if not scored:  # between the first read and the enrolment's commit
                scored.append(await rt.ehr.create(ehr.pain(new_patient_id, after_surgery, 7)))
                ack = await api.post("/fhir/notifications/sub-a", json=scored[0],
                                     headers={"Authorization": "Bearer token-a"})
                ack.raise_for_status()
            return response

        monkeypatch.setattr(rt.ehr, "batch", read_then_score)
        result = await apply_patient(rt, new_patient_id)
        with session_scope(rt.db) as session:
            (event,) = session.exec(select(InboxEvent).where(
                InboxEvent.resource_id == scored[0]["id"])).all()
        tasks = await tasks_of(rt.ehr, new_patient_id)
    assert (event.status, event.attempts) == ("done", 0)  # dropped at intake, never claimed
    assert len(result.new_enrolments) == 1
    assert "pain_reassessment_within_1h" in tasks
