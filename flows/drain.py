"""process-events: drain the inbox in batches, one apply per affected patient per batch."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from fhir_adapters.errors import FhirTemporaryError
from fhir_adapters.inbox_events import patient_ref_of
from flows.apply import apply_patient
from flows.failures import PARKED_ERROR, clear_failures, describe, record_failure
from flows.metrics import APPLY_SECONDS
from flows.relevance import settle_irrelevant
from flows.runtime import ApplySlots, Runtime
from store.db import run_to_the_end, session_scope
from store.inbox import claim_batch, give_back, mark_done, mark_failed, release
from store.locks import PatientLockTimeout
from store.models import InboxEvent
from store.scheduling import parked_patients

log = logging.getLogger(__name__)

@dataclass
class DrainResult:
    """What one batch did: events claimed, patients applied, and those deferred or failed."""

    claimed: int = 0
    irrelevant: int = 0  # about no enrolled patient and unable to enrol one: done, EHR not read
    patients: int = 0
    applied: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # EHR unreachable: events given back
    failed: list[str] = field(default_factory=list)  # a fatal error: events marked failed
    round_trips: int = 0  # the FHIR requests sent while it ran (and by the batches in flight beside it)


def _patient_id(event: InboxEvent) -> str | None:
    ref = event.patient_ref or ""
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


class _Parked(NamedTuple):
    checked: set[str]  # patient refs asked about
    parked: set[str]  # those parked (store.scheduling.parked_patients)


@dataclass
class Batch:
    """Events claimed together (one claim token), settled by the applies of the patients they name."""

    claimed: list[InboxEvent]
    events: list[InboxEvent]  # those left once the irrelevant ones are settled
    parked: _Parked
    now: datetime
    trips: int  # the runtime's FHIR requests when it was claimed

    @property
    def token(self) -> str:
        return _token(self.claimed)


async def claim(rt: Runtime, *, worker: str, batch_size: int = 200,
                lease: timedelta = timedelta(minutes=5), now: datetime | None = None) -> Batch:
    """Claim up to `batch_size` events, none of a patient another claim is applying, and settle
    those that concern no enrolled patient and could enrol none (flows.relevance)."""
    now = now or rt.clock()
    trips = rt.round_trips
    # Stopped while claiming: on PostgreSQL the claim commits on its thread all the same.
    claimed, events, parked = await run_to_the_end(
        rt.in_store(_claim, rt, worker, batch_size, now, lease),
        if_stopped=lambda taken: _give_back(rt, taken[0], taken[1]))
    return Batch(claimed, events, parked, now, trips)


async def apply_batch(rt: Runtime, batch: Batch, slots: ApplySlots | None = None) -> DrainResult:
    """Apply each patient of the batch once, as `slots` allow (else `rt.slots`, shared by every
    batch in flight in this process), and settle its events. Stopped: the events not yet
    settled are given back."""
    try:
        return await _drain_claimed(rt, batch, slots or rt.slots)
    except asyncio.CancelledError:
        await _give_back(rt, batch.claimed, batch.events)
        raise


async def drain_once(rt: Runtime, *, worker: str, batch_size: int = 200,
                     lease: timedelta = timedelta(minutes=5), now: datetime | None = None,
                     concurrency: int | None = None) -> DrainResult:
    """Claim one batch, apply each affected patient once, and settle the batch's events.

    Up to `concurrency` patients (else `rt.concurrent_applies`, ERAS_FHIR_CONCURRENT_APPLIES) are
    applied at once; the batch ends when the last one has.
    """
    batch = await claim(rt, worker=worker, batch_size=batch_size, lease=lease, now=now)
    return await apply_batch(rt, batch, None if concurrency is None else ApplySlots(concurrency))


def _token(claimed: list[InboxEvent]) -> str:
    return claimed[0].claim_token or "" if claimed else ""


async def _give_back(rt: Runtime, claimed: list[InboxEvent], events: list[InboxEvent]) -> None:
    """Stopped mid-batch (SIGTERM, a rolling restart): the events not yet settled go back at
    once to the next drain, here or in another worker, instead of waiting out the lease."""
    ids = [int(e.id or 0) for e in events]
    if ids and (given := await run_to_the_end(rt.in_transaction(give_back, ids=ids, token=_token(claimed)))):
        log.info("drain stopped: %d unsettled events of its batch given back", given)


async def _drain_claimed(rt: Runtime, batch: Batch, slots: ApplySlots) -> DrainResult:
    claimed, events, parked, token, now = batch.claimed, batch.events, batch.parked, batch.token, batch.now
    try:
        by_patient = await _group_by_patient(rt, events)
    except FhirTemporaryError:
        await rt.in_transaction(release, ids=[int(e.id or 0) for e in events], token=token,
                                error="EHR unreachable")
        return DrainResult(claimed=len(claimed), irrelevant=len(claimed) - len(events), deferred=["*"],
                           round_trips=rt.round_trips - batch.trips)
    if about_no_patient := by_patient.pop(None, []):
        # Events about no patient (a Location update, a resource since deleted) apply nothing.
        await rt.in_transaction(mark_done, ids=about_no_patient, token=token, at=now)
    result = DrainResult(claimed=len(claimed), irrelevant=len(claimed) - len(events),
                         patients=len(by_patient))

    async def apply_in_turn(patient_id: str, ids: list[int]) -> None:
        async with slots.held():
            ref = f"Patient/{patient_id}"
            if ref in parked.checked:
                is_parked_now = ref in parked.parked
            else:  # found by reading the resource the event named (_group_by_patient)
                is_parked_now = bool(await rt.in_transaction(parked_patients, patient_refs=[ref]))
            if result.deferred:  # the EHR is down: give the rest back untried
                result.deferred.append(patient_id)
                await rt.in_transaction(release, ids=ids, token=token, error="EHR unreachable")
            elif is_parked_now:
                await rt.in_store(_fail_events, rt, ids, token, PARKED_ERROR)
                result.failed.append(patient_id)
            else:
                with rt.flight.joined():  # its EHR requests wait for the others' (a moment at most)
                    await _apply_one(rt, patient_id, ids, token, result)

    # Different patients at once: an apply mostly waits for the EHR. One patient is in one
    # group only, and the patient lock (apply_patient) still serialises a patient's applies.
    outcomes = await asyncio.gather(*(apply_in_turn(patient_id, ids) for patient_id, ids in by_patient.items()
                                      if patient_id is not None), return_exceptions=True)
    if errors := [outcome for outcome in outcomes if isinstance(outcome, BaseException)]:
        raise errors[0]  # the database, not a patient (_apply_one): the others were let finish
    result.round_trips = rt.round_trips - batch.trips
    return result


def _claim(rt: Runtime, worker: str, batch_size: int, now: datetime,
           lease: timedelta) -> tuple[list[InboxEvent], list[InboxEvent], _Parked]:
    """Claim a batch; the events claimed, those left once the irrelevant ones are settled, and
    which of the patients they name are parked (their events fail, unapplied)."""
    with session_scope(rt.work_db) as session:
        claimed = claim_batch(session=session, worker=worker, limit=batch_size, now=now, lease=lease)
        token = _token(claimed)
        events = settle_irrelevant(session, claimed, rt.pathways, token=token, at=now)
        refs = {f"Patient/{pid}" for e in events if (pid := _patient_id(e)) is not None}
        return claimed, events, _Parked(refs, parked_patients(session=session, patient_refs=refs))


async def _group_by_patient(rt: Runtime, events: list[InboxEvent]) -> dict[str | None, list[int]]:
    """Events by the patient they concern. Id-only notifications are looked up in one batch;
    a ping that names nothing makes the poller look at what changed."""
    groups: dict[str | None, list[int]] = defaultdict(list)
    unknown: list[InboxEvent] = []
    for event in events:
        pid = _patient_id(event)
        if pid is None and event.resource_type and event.resource_id:
            unknown.append(event)
        else:
            groups[pid].append(int(event.id or 0))
        if event.resource_type is None and event.source and not event.source.startswith("poll:"):
            from flows.poll import poll_once  # a ping: something changed, the EHR did not say what

            await poll_once(rt)
    if unknown:
        request = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"{e.resource_type}/{e.resource_id}"}} for e in unknown]}
        response = await rt.ehr.batch(request)
        for event, entry in zip(unknown, response.get("entry", []), strict=False):
            ref = patient_ref_of(entry.get("resource") or {})
            groups[ref.split("/", 1)[1] if ref else None].append(int(event.id or 0))
    return groups


async def _apply_one(rt: Runtime, patient_id: str, ids: list[int], token: str,
                     result: DrainResult) -> None:
    def finish(session: Session) -> None:
        mark_done(session=session, ids=ids, token=token, at=rt.clock())
        clear_failures(session, rt, patient_id)

    try:
        with APPLY_SECONDS.time():
            await apply_patient(rt, patient_id, finish=finish)
        result.applied.append(patient_id)
    except FhirTemporaryError as exc:
        log.warning("EHR unreachable while applying Patient/%s: %s", patient_id, exc.status)
        result.deferred.append(patient_id)  # at once: the applies not yet started see it
        await rt.in_transaction(release, ids=ids, token=token, error=f"temporary: {exc}")
    except PatientLockTimeout:  # another process is stuck on them: later
        await rt.in_transaction(release, ids=ids, token=token, error="patient lock timeout")
    except OperationalError:
        raise  # the database, not the patient: nothing to record it in
    except Exception as exc:  # any other error is this patient's alone: the batch goes on
        error = describe(exc)
        await rt.in_store(_fail_events, rt, ids, token, error)
        await rt.in_store(record_failure, rt, patient_id, error, loop="drain")
        result.failed.append(patient_id)


def _fail_events(rt: Runtime, ids: list[int], token: str, error: str) -> None:
    """Record the failure on the events, where people look for what happened to them."""
    with session_scope(rt.db) as session:
        for event_id in ids:
            mark_failed(session=session, id=event_id, token=token, error=error, at=rt.clock())


async def drain_until_empty(rt: Runtime, *, worker: str, batch_size: int = 200,
                            max_batches: int = 1000) -> list[DrainResult]:
    """Drain batch after batch until a batch claims nothing (or only defers)."""
    results = []
    for _ in range(max_batches):
        result = await drain_once(rt, worker=worker, batch_size=batch_size)
        results.append(result)
        if result.claimed == 0 or (result.deferred and not result.applied):
            break
    return results
