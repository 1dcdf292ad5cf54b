"""Worklist queries: a ward's open actions with their enrolment, and reassigning an action."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, and_, func
from sqlmodel import Session, col, or_, select

from engine.results import OPEN_STATUSES
from store.actions import require_action
from store.models import Enrolment, PlannedActionRow
from store.types import as_utc


class WorklistAction(NamedTuple):
    """The columns of a planned action the worklist shows (no ORM object: a ward has thousands)."""

    key: str
    element_id: str
    title: str
    priority: str
    role: str
    status: str
    opens: datetime | None
    due: datetime | None
    closes: datetime | None
    ward: str | None
    fhir_id: str | None


class WorklistEnrolment(NamedTuple):
    id: str
    patient_ref: str
    pathway_id: str
    ward: str | None
    bed: str | None
    anchors: dict[str, str]


_ACTION_COLUMNS = [getattr(PlannedActionRow, name) for name in (*WorklistAction._fields, "enrolment_id")]
_ENROLMENT_COLUMNS = [getattr(Enrolment, name) for name in WorklistEnrolment._fields]


# Where a page ends: the last row's (due, key); due None once past every dated task. (An
# occurrence without a due time is due when its window closes, `engine.occurrences`: undated
# means neither, so nothing late sinks to the end.)
After = tuple[datetime | None, str]


def _open_on_ward(ward: str, until: datetime, roles: tuple[str, ...] | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        col(PlannedActionRow.ward) == ward,
        col(PlannedActionRow.status).in_([s.value for s in OPEN_STATUSES]),
        col(PlannedActionRow.kind) == "task",
        or_(col(PlannedActionRow.opens).is_(None), col(PlannedActionRow.opens) <= as_utc(until))]
    if roles:
        where.append(col(PlannedActionRow.role).in_(roles))
    return where


def _after(after: After) -> ColumnElement[bool]:
    """Rows past `after` in (due, nulls last; key) order: the keyset of the next page."""
    due, key = col(PlannedActionRow.due), col(PlannedActionRow.key)
    if after[0] is None:
        return and_(due.is_(None), key > after[1])
    at = as_utc(after[0])
    return or_(due.is_(None), due > at, and_(due == at, key > after[1]))


def open_actions(
    *,
    session: Session,
    ward: str,
    until: datetime,
    roles: tuple[str, ...] | None = None,
    limit: int = 5000,
    after: After | None = None,
) -> list[tuple[WorklistAction, WorklistEnrolment]]:
    """Open tasks on `ward` that have opened by `until`, earliest due first (so overdue and late
    first), undated last, then by key; `after` continues after a previous page's last row."""
    statement = (
        select(*_ACTION_COLUMNS)
        .where(*_open_on_ward(ward, until, roles))
        .order_by(col(PlannedActionRow.due).is_(None), col(PlannedActionRow.due), col(PlannedActionRow.key))
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(_after(after))
    rows = list(session.connection().execute(statement))  # Core rows: no ORM loading
    # Enrolments once each (a ward has tens of patients, not thousands): anchors are JSON.
    ids = {row[-1] for row in rows}
    enrolments = {} if not ids else {
        r[0]: WorklistEnrolment(*r) for r in session.connection().execute(
            select(*_ENROLMENT_COLUMNS).where(col(Enrolment.id).in_(ids)))}
    return [(WorklistAction(*row[:-1]), enrolments[row[-1]]) for row in rows]


def count_open(*, session: Session, ward: str, until: datetime, roles: tuple[str, ...] | None = None) -> int:
    """How many tasks `open_actions` would list on `ward` without a limit."""
    statement = select(func.count()).select_from(PlannedActionRow).where(*_open_on_ward(ward, until, roles))
    return int(session.connection().execute(statement).scalar_one())


def action_with_enrolment(*, session: Session, key: str) -> tuple[PlannedActionRow, Enrolment]:
    """The action and its enrolment, or ActionNotFound."""
    action = require_action(session=session, key=key)
    enrolment = session.get(Enrolment, action.enrolment_id)
    assert enrolment is not None, "planned_action.enrolment_id is a foreign key"
    return action, enrolment


def reassign_action(*, session: Session, key: str, role: str, at: datetime) -> PlannedActionRow:
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
