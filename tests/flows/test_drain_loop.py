"""The drain loop of `eras serve` and `eras worker` claims the next batch while an earlier
batch's applies still wait for the EHR: a slow apply holds up its own patient, not the events
of others that arrive meanwhile. A patient's events that arrive while their apply runs wait for
it and then go in one apply. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlmodel import Session, select

from fhir_adapters.inbox_events import inbox_event_for_resource
from flows import drain
from flows.loops import Loops
from flows.runtime import ApplySlots, Runtime
from store.db import session_scope
from store.inbox import store_event
from store.models import InboxEvent
from tests.flows.test_drain_concurrency import (
    AFTER_SURGERY,
    enrol_all,
    enrolled_with_observations,
    status_by_patient,
)


def observe(rt: Runtime, event_id: str, pid: str) -> None:
    """An observation about an enrolled patient, taken in as the intake takes it."""
    resource = {"resourceType": "Observation", "id": event_id, "meta": {"versionId": "1"},
                "subject": {"reference": f"Patient/{pid}"}}
    with session_scope(rt.db) as session:
        store_event(session=session, event=inbox_event_for_resource(resource, source="feed"),
                    at=AFTER_SURGERY)


def statuses_of(rt: Runtime, pid: str) -> Counter[str]:
    with session_scope(rt.db) as session:
        return Counter(e.status for e in session.exec(select(InboxEvent).where(
            InboxEvent.patient_ref == f"Patient/{pid}")))


async def until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(poll(), seconds)
    except TimeoutError:
        raise AssertionError(f"not within {seconds:.0f} s: {what}") from None


class Gated:
    """A stand-in for apply_patient that settles the events; the `slow` patient's first apply
    waits for `gate` (an apply waiting for the EHR)."""

    def __init__(self, slow: str) -> None:
        self.slow, self.gate, self.waiting = slow, asyncio.Event(), asyncio.Event()
        self.applies: Counter[str] = Counter()

    async def __call__(self, rt: Runtime, patient_id: str, *, finish: Callable[[Session], None]) -> None:
        self.applies[patient_id] += 1
        if patient_id == self.slow and self.applies[patient_id] == 1:
            self.waiting.set()
            await self.gate.wait()
        with session_scope(rt.db) as session:
            finish(session)


@asynccontextmanager
async def slow_apply_running(rt: Runtime, apply: Gated) -> AsyncIterator[Loops]:
    """`eras serve`'s drain loop, woken for the events in the inbox, until the slow patient's
    apply waits for the EHR; on the way out the gate opens and the loop stops."""
    loops = Loops(rt, worker="test", drain_interval=60.0, as_flow_runs=False)
    loops.start()
    loops.wake()  # the events are in: as the intake wakes it on commit
    try:
        await asyncio.wait_for(apply.waiting.wait(), 10)
        yield loops
    finally:
        apply.gate.set()
        await loops.stop()


async def test_new_events_are_applied_while_an_earlier_batch_waits_for_the_ehr(
        make_runtime, monkeypatch, new_patient_id) -> None:
    slow, quick, later = (f"{new_patient_id}-{name}" for name in ("slow", "quick", "later"))
    apply = Gated(slow)
    async with make_runtime() as rt:
        monkeypatch.setattr(drain, "apply_patient", apply)
        enrolled_with_observations(rt, [slow, quick])  # one batch: both applied at once
        async with slow_apply_running(rt, apply) as loops:
            await until(lambda: statuses_of(rt, quick) == Counter(done=1), "the first batch's quick apply")
            first_batch = status_by_patient(rt)
            enrol_all(rt, [later])
            observe(rt, f"o2-{quick}", quick)  # arrive while the first batch still applies
            observe(rt, f"o-{later}", later)
            loops.wake()  # as the intake does on commit
            applied = (Counter(done=1), Counter(done=2))
            await until(lambda: (statuses_of(rt, later), statuses_of(rt, quick)) == applied,
                        "the new events applied while the slow apply waits")
            slow_meanwhile = statuses_of(rt, slow)
            apply.gate.set()
            await until(lambda: statuses_of(rt, slow) == Counter(done=1), "the slow apply")
    assert first_batch[f"Patient/{slow}"] == "processing"
    assert slow_meanwhile == Counter(processing=1)
    assert apply.applies == Counter({slow: 1, quick: 2, later: 1})


async def test_a_patients_events_that_arrive_during_their_apply_wait_for_it_then_go_as_one(
        make_runtime, monkeypatch, new_patient_id) -> None:
    """Claimed at once, they would only wait for the patient's lock, holding an apply slot."""
    slow, other = f"{new_patient_id}-slow", f"{new_patient_id}-other"
    apply = Gated(slow)
    async with make_runtime() as rt:
        monkeypatch.setattr(drain, "apply_patient", apply)
        enrolled_with_observations(rt, [slow])
        enrol_all(rt, [other])
        async with slow_apply_running(rt, apply) as loops:
            observe(rt, f"o2-{slow}", slow)
            observe(rt, f"o3-{slow}", slow)
            observe(rt, f"o-{other}", other)  # after them: a claim that took it saw them too
            loops.wake()
            await until(lambda: statuses_of(rt, other) == Counter(done=1), "the other patient's event")
            while_applying = statuses_of(rt, slow)
            apply.gate.set()
            await until(lambda: statuses_of(rt, slow) == Counter(done=3), "the slow patient's events")
    assert while_applying == Counter(processing=1, pending=2)
    assert apply.applies[slow] == 2  # the first event's, then the two later ones together


async def test_slots_are_free_only_when_none_is_waiting() -> None:
    slots, ended = ApplySlots(1), []
    slots.listeners.append(lambda: ended.append(1))
    first_in, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with slots.held():
            first_in.set()
            await release.wait()

    assert slots.free()
    holder = asyncio.create_task(hold())
    await first_in.wait()
    held = slots.free()
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    queued = slots.free()
    release.set()
    await asyncio.gather(holder, waiter)
    assert (held, queued, slots.free(), ended) == (False, False, True, [1, 1])
