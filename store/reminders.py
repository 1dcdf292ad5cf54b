"""Reminders and escalations: which open actions might need one, claimed before they are sent.

Exactly once per (action, kind, level), across processes: a run first claims the level by
inserting its `reminder_sent` row (the primary key makes one insert win), delivers, then marks
it sent. A claim never marked sent (the sender crashed between sending and recording) may be
taken again once its lease has passed; the repeat carries the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from engine.results import OPEN_STATUSES
from store.models import Enrolment, PlannedActionRow, ReminderSent
from store.types import as_utc

# (action key, kind, level): one reminder or escalation level of one action.
Level = tuple[str, str, int]


def open_actions_due_before(*, session: Session, until: datetime, limit: int) -> list[PlannedActionRow]:
    """Open task actions due by `until` (reminders look ahead, escalations look back)."""
    statement = (
        select(PlannedActionRow)
        .join(Enrolment, col(Enrolment.id) == col(PlannedActionRow.enrolment_id))
        .where(col(PlannedActionRow.status).in_(sorted(OPEN_STATUSES)), col(PlannedActionRow.kind) == "task",
               col(PlannedActionRow.due).is_not(None), col(PlannedActionRow.due) <= as_utc(until),
               col(Enrolment.status) == "active", col(Enrolment.parked_at).is_(None))
        .order_by(col(PlannedActionRow.due))
        .limit(limit)
    )
    return list(session.exec(statement))


def settled(*, session: Session, keys: Sequence[str], now: datetime, lease: timedelta) -> set[Level]:
    """Levels of these actions sent, or claimed by a run whose lease has not yet passed."""
    if not keys:
        return set()
    rows = session.exec(select(ReminderSent).where(col(ReminderSent.action_key).in_(keys)))
    stale = as_utc(now) - lease
    return {(r.action_key, r.kind, r.level) for r in rows
            if r.sent_at is not None or (r.claimed_at is not None and r.claimed_at >= stale)}


def claim_levels(*, session: Session, rows: Sequence[ReminderSent], worker: str, now: datetime,
                 lease: timedelta) -> set[Level]:
    """Claim these levels for `worker`; returns those won (new, or an expired claim taken over).

    An insert that meets an existing row does nothing (ON CONFLICT DO NOTHING), so of two runs
    only one wins a level; a claim older than `lease` and never sent is taken over by UPDATE,
    which on PostgreSQL locks the row, so again only one run wins.
    """
    if not rows:
        return set()
    now = as_utc(now)
    values = [{"action_key": r.action_key, "kind": r.kind, "level": r.level, "role": r.role,
               "ward": r.ward, "due_at": as_utc(r.due_at), "claimed_by": worker, "claimed_at": now}
              for r in rows]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = (dialect.insert(ReminderSent).on_conflict_do_nothing()
              .returning(col(ReminderSent.action_key), col(ReminderSent.kind), col(ReminderSent.level)))
    won: set[Level] = {(k, kind, lvl) for k, kind, lvl in session.execute(insert, values).all()}
    lost = [(r.action_key, r.kind, r.level) for r in rows if (r.action_key, r.kind, r.level) not in won]
    if lost:
        expired = (
            update(ReminderSent)
            .where(tuple_(col(ReminderSent.action_key), col(ReminderSent.kind),
                          col(ReminderSent.level)).in_(lost),
                   col(ReminderSent.sent_at).is_(None),
                   or_(col(ReminderSent.claimed_at).is_(None),
                       col(ReminderSent.claimed_at) < now - lease))
            .values(claimed_by=worker, claimed_at=now)
            .returning(col(ReminderSent.action_key), col(ReminderSent.kind), col(ReminderSent.level))
            .execution_options(synchronize_session=False)
        )
        won |= {(k, kind, lvl) for k, kind, lvl in session.execute(expired).all()}
    return won


def mark_sent(*, session: Session, levels: Mapping[Level, str | None], worker: str,
              at: datetime) -> None:
    """Record these claimed levels sent (with the FHIR request's id, when one was written)."""
    for (key, kind, level), fhir_id in levels.items():
        session.execute(
            update(ReminderSent)
            .where(and_(col(ReminderSent.action_key) == key, col(ReminderSent.kind) == kind,
                        col(ReminderSent.level) == level, col(ReminderSent.claimed_by) == worker,
                        col(ReminderSent.sent_at).is_(None)))
            .values(sent_at=as_utc(at), fhir_id=fhir_id)
            .execution_options(synchronize_session=False))


def list_sent(*, session: Session, since: datetime | None = None) -> list[ReminderSent]:
    statement = (select(ReminderSent).where(col(ReminderSent.sent_at).is_not(None))
                 .order_by(col(ReminderSent.sent_at)))
    if since is not None:
        statement = statement.where(col(ReminderSent.sent_at) >= as_utc(since))
    return list(session.exec(statement))
