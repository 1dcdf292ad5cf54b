"""The durable inbox of EHR events, subscription bookkeeping and polling watermarks."""

import logging
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import dml as postgresql_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import Session, col, select

from store.db import add_unless_exists, expire_held
from store.models import InboxEvent, InboxEventCreate, PollWatermark, SubscriptionGap, SubscriptionState
from store.types import as_utc
from store.wakeup import notify_stored

log = logging.getLogger(__name__)
MAX_ERROR_LENGTH = 4000

Gap = tuple[int, int]


class InboxStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class InboxKind(StrEnum):
    """An event pushed by the EHR (rest-hook or Backport) or found by polling it.

    Handshakes and heartbeats are bookkeeping, not work: they go to `subscription_state`.
    """

    EVENT = "event"
    POLL = "poll"


def store_event(*, session: Session, event: InboxEventCreate, at: datetime) -> tuple[InboxEvent, bool]:
    """Add a pending event; a duplicate (same dedup_key) returns the stored row and False.

    One `INSERT ... ON CONFLICT DO NOTHING RETURNING id`: atomic against a concurrent
    duplicate, and one round trip where a look-up plus a SAVEPOINT would take four.
    """
    values: dict[str, Any] = event.model_dump() | {
        "received_at": as_utc(at),
        "status": InboxStatus.PENDING.value,
        "attempts": 0,
    }
    new_id = session.execute(_insert_unless_duplicate(session), values).scalar()
    if new_id is None:
        existing = select(InboxEvent).where(InboxEvent.dedup_key == event.dedup_key)
        return session.exec(existing).one(), False
    return InboxEvent(id=new_id, **values), True


def find_event(*, session: Session, dedup_key: str) -> InboxEvent | None:
    """The stored event with this dedup_key, if any (a sender re-sending what we have)."""
    return session.exec(select(InboxEvent).where(InboxEvent.dedup_key == dedup_key)).first()


def store_events(*, session: Session, events: Sequence[InboxEventCreate], at: datetime) -> list[int | None]:
    """Add many pending events in one statement; per event its new id, or None for a duplicate.

    Of several events in `events` with one dedup_key, the first is stored and the others are
    duplicates. One multi-row INSERT is one round trip, whatever the number of events.
    """
    return store_received(session=session, events=[(event, at) for event in events])


def store_received(*, session: Session, events: Sequence[tuple[InboxEventCreate, datetime]],
                   settled: Collection[int] = frozenset()) -> list[int | None]:
    """`store_events` for events each received at its own instant, in one statement.

    The events at the positions in `settled` are stored already done, payload dropped: the caller
    found them irrelevant (flows.relevance), so no drain claims them, and the row still answers a
    re-delivery as a duplicate and counts in the inbox's figures.
    """
    if not events:
        return []
    rows = []
    for position, (event, at) in enumerate(events):
        received = as_utc(at)
        row = event.model_dump() | {"received_at": received, "status": InboxStatus.PENDING.value,
                                    "attempts": 0, "processed_at": None}
        if position in settled:
            row |= {"status": InboxStatus.DONE.value, "processed_at": received, "payload": None}
        rows.append(row)
    new_ids = {key: new_id for new_id, key in session.execute(_insert_unless_duplicate(session), rows).all()}
    if len(settled) < len(events) and new_ids:
        notify_stored(session)  # PostgreSQL wakes every drain loop when this commits
    return [new_ids.pop(event.dedup_key, None) for event, _ in events]


# SQLAlchemy compiles a dialect's INSERT ... ON CONFLICT anew at every execution: its Insert and
# its ON CONFLICT clause opt out of the statement cache (the clause has no cache key). That was
# most of the intake's database time per notification. These subclasses give the clause its key
# (its conflict target: column names) and let the Insert, whose key covers that clause, be cached.
_CONFLICT_TARGET_KEY = [("inferred_target_elements", InternalTraversal.dp_string_list),
                        ("inferred_target_whereclause", InternalTraversal.dp_clauseelement)]


class _SqliteDoNothing(sqlite_dml.OnConflictDoNothing):
    _traverse_internals = _CONFLICT_TARGET_KEY


class _PostgresDoNothing(postgresql_dml.OnConflictDoNothing):
    _traverse_internals = _CONFLICT_TARGET_KEY


class _SqliteInsert(sqlite.Insert):
    inherit_cache = True


class _PostgresInsert(postgresql.Insert):
    inherit_cache = True


def _insert_unless_duplicate(session: Session) -> Any:
    return _unless_duplicate(session.get_bind().dialect.name)


@cache
def _unless_duplicate(dialect_name: str) -> Any:
    """INSERT ... ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key; one object per dialect."""
    postgres = dialect_name == "postgresql"
    table = InboxEvent.__table__  # type: ignore[attr-defined]  # the table: no ORM bulk-insert layer
    insert = _PostgresInsert if postgres else _SqliteInsert
    statement = insert(table).returning(table.c.id, table.c.dedup_key)
    # What on_conflict_do_nothing(index_elements=["dedup_key"]) sets, as the cacheable clause.
    statement._post_values_clause = (_PostgresDoNothing if postgres else _SqliteDoNothing)(
        index_elements=["dedup_key"])
    return statement


_EVENTS = InboxEvent.__table__  # type: ignore[attr-defined]


def claim_batch(
    *, session: Session, worker: str, limit: int, now: datetime, lease: timedelta
) -> list[InboxEvent]:
    """Claim up to `limit` events, oldest first: pending ones and those whose claim expired,
    except a patient's while another claim of theirs is live.

    A claim older than `lease` belongs to a worker presumed dead, so its events are taken
    again. A patient's events that arrive while a claim is applying them wait for it to end
    (then the next claim takes them all, for one apply): a second worker, or a second batch
    in this one, would only wait for the patient's lock (store.locks), its batch's applies
    behind it. PostgreSQL skips rows another transaction holds (FOR UPDATE SKIP LOCKED), so two
    workers never claim the same event; SQLite has one writer at a time (BEGIN IMMEDIATE)
    and ignores the FOR UPDATE. Each claim gets a new `claim_token`: only the holder of the
    current token may settle the events (mark_done, mark_failed, release).
    """
    now = as_utc(now)
    rows = session.execute(_claimable(), {"c_expired": now - lease, "c_limit": limit}).mappings().all()
    if not rows:
        return []
    claim = {"status": InboxStatus.PROCESSING.value, "claimed_by": worker, "claimed_at": now,
             "claim_token": uuid.uuid4().hex}
    ids = [row["id"] for row in rows]
    session.execute(_claim_statement(),
                    {"c_ids": ids, **{f"c_{name}": value for name, value in claim.items()}})
    expire_held(session, InboxEvent, ids)
    return [InboxEvent.model_construct(**{**row, **claim, "attempts": row["attempts"] + 1}) for row in rows]


@cache
def _claimable() -> Any:
    """The events to claim, oldest first, locked (statement built once: every drain runs it)."""
    claimable = or_(_EVENTS.c.status == InboxStatus.PENDING.value,
                    and_(_EVENTS.c.status == InboxStatus.PROCESSING.value,
                         _EVENTS.c.claimed_at < bindparam("c_expired")))
    busy = _EVENTS.alias("busy")  # patients a live claim is applying (few rows: the status index)
    applying = (sa_select(busy.c.patient_ref)
                .where(busy.c.status == InboxStatus.PROCESSING.value,
                       busy.c.claimed_at >= bindparam("c_expired"), busy.c.patient_ref.is_not(None)))
    free = or_(_EVENTS.c.patient_ref.is_(None), _EVENTS.c.patient_ref.not_in(applying))
    return (sa_select(_EVENTS).where(claimable, free).order_by(_EVENTS.c.received_at, _EVENTS.c.id)
            .limit(bindparam("c_limit")).with_for_update(skip_locked=True))


@cache
def _claim_statement() -> Any:
    """The claim written on the events locked, one UPDATE, not one per row as the ORM's flush."""
    return (update(_EVENTS).where(_EVENTS.c.id.in_(bindparam("c_ids", expanding=True)))
            .values(status=bindparam("c_status"), claimed_by=bindparam("c_claimed_by"),
                    claimed_at=bindparam("c_claimed_at"), claim_token=bindparam("c_claim_token"),
                    attempts=_EVENTS.c.attempts + 1))


def _settle(session: Session, ids: Sequence[int], token: str, values: dict[str, Any]) -> list[int]:
    settled = _update_claimed(session, ids, token, values)
    if len(settled) < len(set(ids)):
        # The lease expired and another worker claimed them: theirs to settle, not ours.
        log.warning("%d inbox events were claimed again by another worker; left to it",
                    len(set(ids)) - len(settled))
    return settled


def _update_claimed(session: Session, ids: Sequence[int], token: str, values: dict[str, Any]) -> list[int]:
    """Set `values` on those of the events still in the claim `token` (not taken again by another
    worker since our lease expired); their ids."""
    params = {f"s_{name}": value for name, value in values.items()}
    statement = _claimed_update(tuple(values))
    return [int(i) for i in session.execute(statement, {"s_ids": list(ids), "s_token": token, **params})
            .scalars()]


@cache
def _claimed_update(columns: tuple[str, ...]) -> Any:
    """UPDATE the still-claimed events SET `columns` RETURNING id: one statement object per set of
    columns (a drain settles every apply with one), Core, not the ORM's bulk UPDATE: the rows are
    not loaded, and the session's copies are not updated either way."""
    still_claimed = and_(_EVENTS.c.id.in_(bindparam("s_ids", expanding=True)),
                         _EVENTS.c.status == InboxStatus.PROCESSING.value,
                         _EVENTS.c.claim_token == bindparam("s_token"))
    return (update(_EVENTS).where(still_claimed)
            .values({name: bindparam(f"s_{name}") for name in columns}).returning(_EVENTS.c.id))


def mark_done(*, session: Session, ids: Sequence[int], token: str, at: datetime) -> list[int]:
    """Mark events processed, if still in the claim `token`; returns those marked.

    Call it in the transaction that saved their effects. An event claimed again since (our
    lease expired) is left alone, so no event is settled twice or by a presumed-dead worker.
    """
    if not ids:
        return []
    # The payload goes once processed: the store keeps no more than it needs (README, retention).
    return _settle(session, ids, token, {"status": InboxStatus.DONE, "processed_at": as_utc(at),
                                         "last_error": None, "payload": None})


def mark_failed(*, session: Session, id: int, token: str, error: str, at: datetime) -> bool:
    """Mark one event of the claim `token` failed with its error (one sentence, no patient data)."""
    return bool(_settle(session, [id], token, {"status": InboxStatus.FAILED,
                                               "processed_at": as_utc(at),
                                               "last_error": error[:MAX_ERROR_LENGTH]}))


def pending_count(*, session: Session) -> int:
    """How many events wait to be claimed (expired claims not included)."""
    statement = select(func.count()).where(col(InboxEvent.status) == InboxStatus.PENDING)
    return int(session.exec(statement).one())


def record_handshake(
    *,
    session: Session,
    subscription_id: str,
    at: datetime,
    status: str | None,
    events_since_start: int | None,
) -> None:
    """Note a Backport handshake; its event count is the baseline for gap detection."""
    state = _locked_state(session=session, subscription_id=subscription_id, at=at)
    state.handshake_at = as_utc(at)
    _set_status(state, status, at)
    if state.last_event_number is None and events_since_start is not None:
        state.last_event_number = events_since_start
    session.flush()


def record_heartbeat(
    *,
    session: Session,
    subscription_id: str,
    at: datetime,
    status: str | None = None,
    error: str | None = None,
    events_since_start: int | None = None,
) -> Gap | None:
    """Note a heartbeat (or query-status); a count beyond the last event seen is a gap."""
    state = _locked_state(session=session, subscription_id=subscription_id, at=at)
    state.last_heartbeat_at = as_utc(at)
    _set_status(state, status, at, error=error)
    gap = None
    if events_since_start is not None and events_since_start > (state.last_event_number or 0):
        gap = _open_gap(session, state, events_since_start + 1, at)
        state.last_event_number = events_since_start
    session.flush()
    return gap


def record_event_number(*, session: Session, subscription_id: str, number: int, at: datetime) -> Gap | None:
    """Note a Backport event number; return the numbers skipped since the last one, if any.

    A subscription first heard of at event n > 1 gets the gap (1, n-1): a fresh deployment
    cannot be told from lost events, and catching up is idempotent. A late event that fills
    the edge of an open gap narrows or resolves it.
    """
    state = _locked_state(session=session, subscription_id=subscription_id, at=at)
    last = state.last_event_number or 0
    gap = None
    if number > last + 1:
        gap = _open_gap(session, state, number, at)
    elif number <= last:
        _fill_gap(session, subscription_id, number, at)
    if number > last:
        state.last_event_number = number
        state.last_event_at = as_utc(at)
    state.updated_at = as_utc(at)
    session.flush()
    return gap


def gaps_to_catch_up(*, session: Session) -> list[SubscriptionGap]:
    """Unresolved gaps, oldest first: a flow queries the EHR for what they missed."""
    statement = (
        select(SubscriptionGap)
        .where(col(SubscriptionGap.resolved_at).is_(None))
        .order_by(col(SubscriptionGap.detected_at), col(SubscriptionGap.id))
    )
    return list(session.exec(statement).all())


def resolve_gap(*, session: Session, gap_id: int, at: datetime) -> None:
    """Mark a gap caught up."""
    session.execute(
        update(SubscriptionGap)
        .where(col(SubscriptionGap.id) == gap_id)
        .values(resolved_at=as_utc(at))
        .execution_options(synchronize_session=False)
    )


def get_subscription_state(*, session: Session, subscription_id: str) -> SubscriptionState | None:
    return session.get(SubscriptionState, subscription_id)


def get_watermark(*, session: Session, resource_type: str) -> datetime | None:
    """The newest lastUpdated seen when polling `resource_type`, or None before the first poll."""
    row = session.get(PollWatermark, resource_type)
    return None if row is None else row.last_updated


def set_watermark(*, session: Session, resource_type: str, last_updated: datetime, at: datetime) -> datetime:
    """Advance the watermark; it never moves back, so an overlapping poll cannot rewind it."""
    last_updated = as_utc(last_updated)
    statement = (
        select(PollWatermark)
        .where(PollWatermark.resource_type == resource_type)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row, created = add_unless_exists(
        session=session,
        row=PollWatermark(resource_type=resource_type, last_updated=last_updated, updated_at=as_utc(at)),
        find_existing=lambda: session.exec(statement).first(),
    )
    if not created and last_updated > row.last_updated:
        row.last_updated = last_updated
        row.updated_at = as_utc(at)
        session.flush()
    return row.last_updated


def _locked_state(*, session: Session, subscription_id: str, at: datetime) -> SubscriptionState:
    """The subscription's state row, created when new and locked (PostgreSQL) until commit.

    The lock serialises two notifications of one subscription, so that both cannot read
    the same last event number and report a gap that is not there.
    """
    statement = (
        select(SubscriptionState)
        .where(SubscriptionState.subscription_id == subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    state, _ = add_unless_exists(
        session=session,
        row=SubscriptionState(subscription_id=subscription_id, updated_at=as_utc(at)),
        find_existing=lambda: session.exec(statement).first(),
    )
    return state


def _set_status(
    state: SubscriptionState, status: str | None, at: datetime, *, error: str | None = None
) -> None:
    if status is not None:
        state.status = status
    if error is not None:
        state.error = error[:MAX_ERROR_LENGTH]
    state.updated_at = as_utc(at)


def _open_gap(session: Session, state: SubscriptionState, number: int, at: datetime) -> Gap:
    """Record the numbers between the last event seen and `number` (exclusive) as missing."""
    gap = ((state.last_event_number or 0) + 1, number - 1)
    session.add(
        SubscriptionGap(
            subscription_id=state.subscription_id,
            from_number=gap[0],
            to_number=gap[1],
            last_seen_at=state.last_event_at,
            detected_at=as_utc(at),
        )
    )
    return gap


def _fill_gap(session: Session, subscription_id: str, number: int, at: datetime) -> None:
    """A late event at the edge of an open gap narrows it; the last one resolves it."""
    statement = select(SubscriptionGap).where(
        SubscriptionGap.subscription_id == subscription_id,
        col(SubscriptionGap.resolved_at).is_(None),
        or_(col(SubscriptionGap.from_number) == number, col(SubscriptionGap.to_number) == number),
    )
    for gap in session.exec(statement).all():
        if gap.from_number == gap.to_number:
            gap.resolved_at = as_utc(at)
        elif gap.from_number == number:
            gap.from_number += 1
        else:
            gap.to_number -= 1


def give_back(*, session: Session, ids: Sequence[int], token: str) -> int:
    """Of a claim's events, those not yet settled go back to pending for the next drain (a drain
    stopped mid-batch); the settled ones are left. Returns how many went back."""
    if not ids:
        return 0
    return len(_update_claimed(session, ids, token, {"status": InboxStatus.PENDING, "claimed_by": None,
                                                     "claimed_at": None, "claim_token": None}))


def release(*, session: Session, ids: Sequence[int], token: str, error: str | None = None) -> None:
    """Give claimed events back (the EHR was unreachable): the next drain takes them again."""
    if not ids:
        return
    _settle(session, ids, token, {
        "status": InboxStatus.PENDING, "claimed_by": None, "claimed_at": None, "claim_token": None,
        "last_error": None if error is None else error[:MAX_ERROR_LENGTH]})
