"""Worklist queries: a ward's open actions with their enrolment, and reassigning an action."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, or_, select

from store.actions import require_action
from store.models import Enrolment, PlannedAction
from store.types import ActionStatus, as_utc

OPEN_STATUSES = (ActionStatus.UPCOMING, ActionStatus.DUE, ActionStatus.OVERDUE)


def open_actions(
    *,
    session: Session,
    ward: str,
    until: datetime,
    roles: tuple[str, ...] | None = None,
    limit: int = 5000,
) -> list[tuple[PlannedAction, Enrolment]]:
    """Open tasks on `ward` that have opened by `until`, undated last, earliest due first.

    Sorting by due puts overdue tasks (due in the past) first without a second pass.
    """
    statement = (
        select(PlannedAction, Enrolment)
        .join(Enrolment, col(Enrolment.id) == col(PlannedAction.enrolment_id))
        .where(PlannedAction.ward == ward)
        .where(col(PlannedAction.status).in_([s.value for s in OPEN_STATUSES]))
        .where(PlannedAction.kind == "task")
        .where(or_(col(PlannedAction.opens).is_(None), col(PlannedAction.opens) <= as_utc(until)))
        .order_by(col(PlannedAction.due).is_(None), col(PlannedAction.due), col(PlannedAction.key))
        .limit(limit)
    )
    if roles:
        statement = statement.where(col(PlannedAction.role).in_(roles))
    return [(action, enrolment) for action, enrolment in session.exec(statement)]


def action_with_enrolment(*, session: Session, key: str) -> tuple[PlannedAction, Enrolment]:
    """The action and its enrolment, or ActionNotFound."""
    action = require_action(session=session, key=key)
    enrolment = session.get(Enrolment, action.enrolment_id)
    assert enrolment is not None, "planned_action.enrolment_id is a foreign key"
    return action, enrolment


def reassign_action(*, session: Session, key: str, role: str, at: datetime) -> PlannedAction:
    """Give an open action to another role; the change counts as a new revision."""
    row = require_action(session=session, key=key)
    row.role = role
    row.revision += 1
    row.updated_at = as_utc(at)
    session.add(row)
    session.flush()
    return row


def note_fhir_version(*, session: Session, key: str, version: str | None) -> None:
    """The Task version our own write produced, so the next If-Match expects it."""
    row = require_action(session=session, key=key)
    row.fhir_version = version
    row.fhir_synced_revision = row.revision
    session.add(row)
    session.flush()
