"""Worklist queries: a ward's open actions with their enrolment, and reassigning an action."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, func, literal
from sqlalchemy import select as sa_select
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


_ACTION_COLUMNS = [getattr(PlannedActionRow, name) for name in WorklistAction._fields]
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


class WardPage(NamedTuple):
    rows: list[tuple[WorklistAction, WorklistEnrolment]]
    total: int  # open tasks on the ward within the filter, whatever the page


def open_actions(
    *,
    session: Session,
    ward: str,
    until: datetime,
    roles: tuple[str, ...] | None = None,
    limit: int = 5000,
    after: After | None = None,
) -> WardPage:
    """Open tasks on `ward` that have opened by `until`, earliest due first (so overdue and late
    first), undated last, then by key; `after` continues after a previous page's last row.

    One round trip for the first page: the enrolment joined, the total as a window count over
    the rows the sort reads anyway (a later page counts separately: the cursor narrows its rows).
    """
    where = _open_on_ward(ward, until, roles)
    total: Any = func.count().over() if after is None else literal(-1)
    # SQLAlchemy's select: SQLModel's typed overloads stop at four columns.
    statement = (
        sa_select(*_ACTION_COLUMNS, *_ENROLMENT_COLUMNS, total)
        .join(Enrolment, col(Enrolment.id) == col(PlannedActionRow.enrolment_id))
        .where(*where, *([] if after is None else [_after(after)]))
        .order_by(col(PlannedActionRow.due).is_(None), col(PlannedActionRow.due), col(PlannedActionRow.key))
        .limit(limit)
    )
    rows = list(session.connection().execute(statement))  # Core rows: no ORM loading
    split = len(_ACTION_COLUMNS)
    page = [(WorklistAction(*row[:split]), WorklistEnrolment(*row[split:-1])) for row in rows]
    if after is None:
        return WardPage(page, rows[0][-1] if rows else 0)
    counted = select(func.count()).select_from(PlannedActionRow).where(*where)
    return WardPage(page, int(session.connection().execute(counted).scalar_one()))


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
