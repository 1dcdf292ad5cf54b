"""Reminders and escalations: which open actions might need one, and which were already sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from engine.results import OPEN_STATUSES
from store.models import Enrolment, PlannedActionRow, ReminderSent
from store.types import as_utc


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


def already_sent(*, session: Session, keys: Sequence[str]) -> set[tuple[str, str, int]]:
    if not keys:
        return set()
    rows = session.exec(select(ReminderSent).where(col(ReminderSent.action_key).in_(keys)))
    return {(r.action_key, r.kind, r.level) for r in rows}


def record_sent(*, session: Session, rows: Sequence[ReminderSent]) -> None:
    for row in rows:
        row.sent_at, row.due_at = as_utc(row.sent_at), as_utc(row.due_at)
        session.add(row)
    session.flush()


def list_sent(*, session: Session, since: datetime | None = None) -> list[ReminderSent]:
    statement = select(ReminderSent).order_by(col(ReminderSent.sent_at))
    if since is not None:
        statement = statement.where(col(ReminderSent.sent_at) >= as_utc(since))
    return list(session.exec(statement))
