"""A drain batch applies different patients at once (an apply mostly waits for the EHR), so an
enrolled patient's event no longer waits for every other patient's apply ahead of it in the batch
and in the batch before; their requests to the EHR go together. Each patient is still applied once
per batch, the result equals applying
one patient at a time, and an EHR outage or a database error settles nothing twice and loses
nothing. On SQLite and PostgreSQL, against the sandbox EHR."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from fhir_adapters.errors import FhirTemporaryError
from fhir_adapters.inbox_events import inbox_event_for_resource
from flows import drain
from flows.apply import apply_patient
from flows.config import open_runtime
from flows.drain import drain_once
from flows.runtime import Runtime
from flows.settings import Settings
from store.db import session_scope
from store.inbox import store_event
from store.models import InboxEvent
from tests.flows.conftest import lumbar
from tests.flows.test_runtime_e2e import END, create_all, task_keys, timeline
from tests.utils.notifications import clear_intake_tables

AFTER_SURGERY = END + timedelta(minutes=20)
Apply = Callable[..., Awaitable[Any]]


def store_events(rt: Runtime, resources: list[dict[str, Any]]) -> None:
    """One inbox event per resource, as a rest-hook delivers them, in this order."""
    clear_intake_tables(rt.db)
    with session_scope(rt.db) as session:
        for resource in resources:
            store_event(session=session, event=inbox_event_for_resource(resource, source="feed"),
                        at=AFTER_SURGERY)


def statuses(rt: Runtime) -> Counter[str]:
    with session_scope(rt.db) as session:
        return Counter(e.status for e in session.exec(select(InboxEvent)))


class InFlight:
    """Wraps apply_patient: how many applies run at once, and how often each patient is applied."""

    def __init__(self, apply: Apply) -> None:
        self.apply, self.now, self.most = apply, 0, 0
        self.patients: Counter[str] = Counter()

    async def __call__(self, rt: Runtime, patient_id: str, **kwargs: Any) -> Any:
        self.patients[patient_id] += 1
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.apply(rt, patient_id, **kwargs)
        finally:
            self.now -= 1


async def booked_and_operated(rt: Runtime, patients: list[str]) -> list[dict[str, Any]]:
    """Each patient's whole timeline in the EHR; the events: booking, smoking, stay, surgery."""
    events = []
    for pid in patients:
        events += (await create_all(rt.ehr, *timeline(pid)))[1:]
    return events


async def test_a_batch_applies_patients_at_once_each_once_and_as_one_at_a_time_would(
        make_runtime, monkeypatch, new_patient_id) -> None:
    together = [f"{new_patient_id}-together-{i}" for i in range(5)]
    in_turn = [f"{new_patient_id}-in-turn-{i}" for i in range(5)]
    async with make_runtime() as rt:
        rt = dataclasses.replace(rt, clock=lambda: AFTER_SURGERY)
        counting = InFlight(apply_patient)
        monkeypatch.setattr(drain, "apply_patient", counting)

        store_events(rt, await booked_and_operated(rt, together))
        result = await drain_once(rt, worker="test", concurrency=3)
        at_once, applied = counting.most, Counter(counting.patients)
        after_together = statuses(rt)

        counting.most = 0
        store_events(rt, await booked_and_operated(rt, in_turn))
        sequential = await drain_once(rt, worker="test", concurrency=1)
        one_at_a_time = counting.most
        keys = {pid: await task_keys(rt.ehr, pid) for pid in together + in_turn}
    # A patient not yet enrolled: the smoking status and the stay are settled unread, the
    # booking and surgery (types that can enrol) are applied, and the apply reads it all.
    assert (result.claimed, result.irrelevant, result.patients) == (20, 10, 5)
    assert sorted(result.applied) == sorted(together)
    assert at_once == 3  # at once, and no more than asked
    assert applied == Counter(dict.fromkeys(together, 1))  # each patient once for its events
    assert after_together == Counter({"done": 20})
    assert (sorted(sequential.applied), one_at_a_time) == (sorted(in_turn), 1)
    # Applies at once share their batch reads and transactions (fhir_adapters.coalesce).
    assert result.round_trips < sequential.round_trips, (result.round_trips, sequential.round_trips)
    planned = {frozenset(k.split(":", 1)[1] for k in keys[pid]) for pid in together + in_turn}
    assert len(planned) == 1 and next(iter(planned))  # the same Tasks for every patient
    assert all(max(keys[pid].values()) == 1 for pid in keys)  # none written twice


async def test_the_setting_bounds_the_applies_at_once_and_sizes_the_pools_above_it(
        monkeypatch, tmp_path, fhir_sandbox, db_url, new_patient_id) -> None:
    """ERAS_FHIR_CONCURRENT_APPLIES, read at the edge as `eras serve` reads it: the drain applies
    that many patients at once, and each FHIR client can hold more connections than that (the
    tick and polls beside a full batch)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in {"ERAS_FHIR_CONCURRENT_APPLIES": "2", "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
                        "ERAS_DATABASE_URL": db_url}.items():
        monkeypatch.setenv(name, value)
    patients = [f"{new_patient_id}-{i}" for i in range(5)]
    async with open_runtime(Settings(), migrate=False, pathways={"lumbar_fusion": lumbar()}) as rt:
        rt = dataclasses.replace(rt, clock=lambda: AFTER_SURGERY)
        counting = InFlight(apply_patient)
        monkeypatch.setattr(drain, "apply_patient", counting)
        store_events(rt, await booked_and_operated(rt, patients))
        result = await drain_once(rt, worker="test")
        pool = rt.ehr.max_connections
    assert rt.concurrent_applies == 2
    assert sorted(result.applied) == sorted(patients)
    assert counting.most == 2
    assert pool > 2


async def test_ehr_unreachable_gives_back_the_untried_and_settles_only_the_applied(
        make_runtime, monkeypatch, new_patient_id) -> None:
    """The first patient's apply finds the EHR down: the one already in flight beside it
    finishes, and the patients not yet started are given back untried, for the next drain."""
    patients = [f"{new_patient_id}-{i}" for i in range(4)]
    order: list[str] = []
    both = asyncio.Event()

    async def apply(rt: Runtime, patient_id: str, *, finish: Callable[[Session], None]) -> None:
        order.append(patient_id)
        if len(order) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), timeout=30)  # both in flight before either ends
        if patient_id == patients[0]:
            raise FhirTemporaryError("503 from the EHR")
        with session_scope(rt.db) as session:
            finish(session)

    async with make_runtime() as rt:
        monkeypatch.setattr(drain, "apply_patient", apply)
        enrolled_with_observations(rt, patients)
        result = await drain_once(rt, worker="test", concurrency=2)
        by_patient = status_by_patient(rt)
    assert order == patients[:2]  # the other two never started
    assert result.applied == [patients[1]]
    assert sorted(result.deferred) == sorted([patients[0], *patients[2:]])
    assert by_patient == {f"Patient/{patients[0]}": "pending", f"Patient/{patients[1]}": "done",
                          f"Patient/{patients[2]}": "pending", f"Patient/{patients[3]}": "pending"}


async def test_a_database_error_lets_the_other_applies_finish_then_stops_the_batch(
        make_runtime, monkeypatch, new_patient_id) -> None:
    """The database, not the patient: nothing to record it in, so the drain raises (the loop
    retries) after the applies in flight have committed; the failed one's events wait for
    their lease, as before."""
    patients = [f"{new_patient_id}-{i}" for i in range(3)]

    async def apply(rt: Runtime, patient_id: str, *, finish: Callable[[Session], None]) -> None:
        await asyncio.sleep(0)
        if patient_id == patients[0]:
            raise OperationalError("UPDATE ...", {}, Exception("database is locked"))
        await asyncio.sleep(0)
        with session_scope(rt.db) as session:
            finish(session)

    async with make_runtime() as rt:
        monkeypatch.setattr(drain, "apply_patient", apply)
        enrolled_with_observations(rt, patients)
        with pytest.raises(OperationalError):
            await drain_once(rt, worker="test", concurrency=3)
        by_patient = status_by_patient(rt)
    assert by_patient == {f"Patient/{patients[0]}": "processing", f"Patient/{patients[1]}": "done",
                          f"Patient/{patients[2]}": "done"}


def enrolled_with_observations(rt: Runtime, patients: list[str]) -> None:
    """An observation each in the inbox, for patients already enrolled."""
    store_events(rt, [{"resourceType": "Observation", "id": f"o-{pid}", "meta": {"versionId": "1"},
                       "subject": {"reference": f"Patient/{pid}"}} for pid in patients])
    enrol_all(rt, patients)


def status_by_patient(rt: Runtime) -> dict[str | None, str]:
    """Each patient's inbox event status."""
    with session_scope(rt.db) as session:
        return {e.patient_ref: e.status for e in session.exec(select(InboxEvent))}


def enrol_all(rt: Runtime, patients: list[str]) -> None:
    """Enrolled, so that their observations are not settled as irrelevant before any apply."""
    from flows.apply import register_pathway
    from store.enrolments import enrol

    with session_scope(rt.db) as session:
        pathway = rt.pathway("lumbar_fusion")
        register_pathway(session, pathway, AFTER_SURGERY)
        for pid in patients:
            enrol(session=session, patient_ref=f"Patient/{pid}", pathway_id=pathway.id,
                  pathway_version=pathway.version, parameters={}, enrolled_by="test", at=AFTER_SURGERY)


async def test_a_drain_stopped_mid_batch_gives_back_at_once_what_it_had_not_settled(
        make_runtime, monkeypatch, new_patient_id) -> None:
    """A worker stopped mid-batch (SIGTERM, a rolling restart) cancels its drain: the events of
    the applies that had not finished go back to pending for the next drain at once, instead of
    waiting out the 5-minute lease; those already settled stay done."""
    patients = [f"{new_patient_id}-{i}" for i in range(3)]
    stuck: list[str] = []
    both_stuck = asyncio.Event()

    async def apply(rt: Runtime, patient_id: str, *, finish: Callable[[Session], None]) -> None:
        if patient_id != patients[0] and len(stuck) < 2:  # the first batch's: they never end
            stuck.append(patient_id)
            if len(stuck) == 2:
                both_stuck.set()
            await asyncio.Event().wait()  # waiting for the EHR when the stop comes
        with session_scope(rt.db) as session:
            finish(session)

    async with make_runtime() as rt:
        monkeypatch.setattr(drain, "apply_patient", apply)
        enrolled_with_observations(rt, patients)
        batch = asyncio.create_task(drain_once(rt, worker="stopping", concurrency=3))
        await asyncio.wait_for(both_stuck.wait(), timeout=30)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        after_stop = status_by_patient(rt)
        again = await drain_once(rt, worker="next", now=AFTER_SURGERY)  # well inside the lease
        by_patient = status_by_patient(rt)
    assert after_stop == {f"Patient/{patients[0]}": "done", f"Patient/{patients[1]}": "pending",
                          f"Patient/{patients[2]}": "pending"}
    assert (again.claimed, sorted(again.applied)) == (2, sorted(patients[1:]))
    assert set(by_patient.values()) == {"done"}
