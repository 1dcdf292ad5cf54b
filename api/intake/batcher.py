"""Taking notifications in: events and subscription bookkeeping committed before the ack.

Concurrent notifications are group-committed: while one transaction is being written, the
next requests queue up and go into the following transaction together, and every request
is answered only after the transaction holding it has committed. One commit (one fsync)
then covers many notifications, and SQLite's single writer is never fought over by
threads sleeping in its busy handler. Alone, a notification still gets its own commit at
once: batching adds no wait.

A hospital's EHR sends every patient's events. Those that cannot matter (flows.relevance: a
patient with no enrolment, a resource that cannot enrol one) are stored already done, decided
with one query per transaction: the drain never claims them and the EHR is never asked.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from fhir_adapters.notifications import Notification, NotificationType
from flows.relevance import irrelevant_events
from store.db import session_scope
from store.inbox import (
    Gap,
    get_subscription_state,
    record_event_number,
    record_handshake,
    record_heartbeat,
    store_received,
)

log = logging.getLogger(__name__)

MAX_BATCH = 128
POSTGRES_WRITERS = 4
_STATUS_REPORTS = (NotificationType.HEARTBEAT, NotificationType.QUERY_STATUS)


@dataclass(frozen=True)
class IntakeResult:
    """What one notification changed: new inbox rows (and those of them the drain must process,
    the others being irrelevant, stored done), duplicates, gaps found."""

    created_ids: tuple[int, ...]
    duplicates: int
    gaps: tuple[Gap, ...]
    to_process: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Pending:
    notification: Notification
    at: datetime
    answer: asyncio.Future[IntakeResult]


class IntakeBatcher:
    """Group commit of notifications; `run()` is the writer task the app's lifespan starts."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH, writers: int | None = None,
                 enrolling_types: frozenset[str] | None = None) -> None:
        """`enrolling_types`: the resource types that can enrol a patient (flows.relevance), to
        settle irrelevant events at intake; None keeps every event for the drain to decide."""
        self._engine = engine
        self._enrolling_types = enrolling_types
        self._max_batch = max_batch
        # SQLite has one writer whatever we do; PostgreSQL commits several batches at once.
        self._writers = writers or (1 if engine.dialect.name == "sqlite" else POSTGRES_WRITERS)
        # The writers' own threads: a plain executor hop costs less than anyio's worker threads
        # (run_in_threadpool), paid at every group commit.
        self._threads = ThreadPoolExecutor(self._writers, thread_name_prefix="intake-writer")
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()

    async def take_in(self, notification: Notification, *, at: datetime) -> IntakeResult:
        """Store the notification; returns once it is committed (raises if it could not be)."""
        answer: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(notification, at, answer))
        return await answer

    async def run(self) -> None:
        slots = asyncio.Semaphore(self._writers)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                batch = [await self._queue.get()]
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                task = asyncio.create_task(self._write(batch))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _task: slots.release())
        finally:
            self._threads.shutdown(wait=False)  # a commit under way still finishes

    async def _write(self, batch: list[_Pending]) -> None:
        items = [(pending.notification, pending.at) for pending in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._threads, take_in_many, self._engine, items, self._enrolling_types)
        except Exception:
            if len(batch) == 1:
                _settle(batch[0], error=True)
                return
            # One bad notification must not fail the others: retry them one by one.
            log.warning("group commit of %d notifications failed; retrying them one by one", len(batch))
            for pending in batch:
                await self._write([pending])
            return
        for pending, result in zip(batch, results, strict=True):
            _settle(pending, result=result)


def _settle(pending: _Pending, *, result: IntakeResult | None = None, error: bool = False) -> None:
    if pending.answer.done():
        return
    if error:
        pending.answer.set_exception(IntakeFailed())
    elif result is not None:
        pending.answer.set_result(result)


class IntakeFailed(Exception):
    """The database refused or could not store a notification; the notifier should retry."""

    def __init__(self) -> None:
        super().__init__("the notification could not be stored; retry later")


def take_in_many(engine: Engine, items: list[tuple[Notification, datetime]],
                 enrolling_types: frozenset[str] | None = None) -> list[IntakeResult]:
    """Store several notifications in one transaction; committed when this returns."""
    try:
        with session_scope(engine) as session:
            return _take_in(session, items, enrolling_types)
    except Exception:
        log.exception("storing %d notification(s) failed", len(items))
        raise


def _take_in(session: Session, items: list[tuple[Notification, datetime]],
             enrolling_types: frozenset[str] | None) -> list[IntakeResult]:
    """All the events in one multi-row INSERT, then each notification's bookkeeping in order.

    An event found irrelevant here may concern a patient whose enrolling apply is in flight;
    that apply reads the record again once its enrolment is committed (flows.apply), so the
    event's resource is read then.
    """
    events = [(event, at) for notification, at in items for event in notification.events]
    settled: set[int] = set()
    if enrolling_types is not None:
        dropped = {id(e) for e in irrelevant_events(session, (e for e, _ in events), enrolling_types)}
        settled = {position for position, (event, _) in enumerate(events) if id(event) in dropped}
    numbered = list(enumerate(store_received(session=session, events=events, settled=settled)))
    results, position = [], 0
    for notification, at in items:
        mine = numbered[position : position + len(notification.events)]
        position += len(notification.events)
        created = tuple(new_id for _, new_id in mine if new_id is not None)
        to_process = tuple(new_id for k, new_id in mine if new_id is not None and k not in settled)
        gaps = _bookkeeping(session, notification, at)
        results.append(IntakeResult(created, len(mine) - len(created), tuple(gaps), to_process))
    return results


# An event number this far past the last one seen is not believed (an EHR bug or a hostile
# sender): recorded, it would open a gap of absurd size and make every later real number look
# late, so gaps would never be detected again. Its resources are still taken in.
MAX_EVENT_NUMBER_JUMP = 100_000


def _believable(session: Session, subscription_id: str, number: int | None) -> bool:
    if number is None:  # a rest-hook resource or ping: no number, nothing to read
        return True
    state = get_subscription_state(session=session, subscription_id=subscription_id)
    last = state.last_event_number if state is not None else None
    if last is None or number <= last + MAX_EVENT_NUMBER_JUMP:
        return True
    log.warning("subscription %s: event number %d is more than %d past the last (%d); not recorded",
                subscription_id, number, MAX_EVENT_NUMBER_JUMP, last)
    return False


def _bookkeeping(session: Session, notification: Notification, at: datetime) -> list[Gap]:
    subscription = notification.subscription_id
    since_start = notification.events_since_start
    if not _believable(session, subscription, since_start):
        since_start = None
    if notification.type == NotificationType.HANDSHAKE:
        record_handshake(
            session=session,
            subscription_id=subscription,
            at=at,
            status=notification.status,
            events_since_start=since_start,
        )
        return []
    if notification.type in _STATUS_REPORTS:
        gap = record_heartbeat(
            session=session,
            subscription_id=subscription,
            at=at,
            status=notification.status,
            error=notification.error,
            events_since_start=since_start,
        )
        return [gap] if gap else []
    if notification.type == NotificationType.EVENT_NOTIFICATION:
        return _event_numbers(session, notification, at)
    return []


def _event_numbers(session: Session, notification: Notification, at: datetime) -> list[Gap]:
    numbers = sorted({e.event_number for e in notification.events if e.event_number is not None})
    if not numbers and notification.events_since_start is not None:
        numbers = [notification.events_since_start]
    gaps = []
    for number in numbers:
        if not _believable(session, notification.subscription_id, number):
            continue
        gap = record_event_number(
            session=session, subscription_id=notification.subscription_id, number=number, at=at
        )
        if gap is not None:
            gaps.append(gap)
    return gaps
