"""Outcomes people record on the worklist: an action done, or declined with a reason."""

from datetime import datetime

from sqlmodel import Session

from engine.results import Status, completed_status
from store.actions import require_action
from store.history import record_transition
from store.models import PlannedActionRow
from store.types import as_utc


def complete_action(
    *, session: Session, key: str, by: str, at: datetime, cause: str
) -> PlannedActionRow:
    """Mark an action done by `by` (a user id) at `at`: done late when its window had closed."""
    row = require_action(session=session, key=key)
    row.completed_at = as_utc(at)
    row.completed_by = by
    closes = None if row.closes is None else as_utc(row.closes)
    status = completed_status(row.completed_at, closes)
    return _finish(session=session, row=row, status=status, at=at, cause=cause)


def decline_action(
    *,
    session: Session,
    key: str,
    reason: str,
    text: str | None,
    by: str,
    at: datetime,
    cause: str,
) -> PlannedActionRow:
    """Mark an action declined, with a coded reason and optional free text."""
    row = require_action(session=session, key=key)
    row.completed_at = as_utc(at)
    row.completed_by = by
    row.decline_reason = reason
    row.decline_text = text
    return _finish(session=session, row=row, status=Status.DECLINED, at=at, cause=cause)


def _finish(
    *, session: Session, row: PlannedActionRow, status: Status, at: datetime, cause: str
) -> PlannedActionRow:
    from_status = row.status
    row.status = status
    row.revision += 1
    row.updated_at = as_utc(at)
    session.add(row)
    if from_status != status:
        record_transition(
            session=session, action=row, from_status=from_status, at=as_utc(at), cause=cause
        )
    session.flush()
    return row
