"""A patient's pathway status from what the store already holds: the worklist's live statuses
for open work, the stored element results for compliance and for what is still open or missed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from api.worklist.view import live_status
from engine.audit import eras_item_of
from engine.compliance import Ratio, element_ratio, item_ratios
from engine.model import PHASES, Pathway
from engine.results import OPEN_STATUSES, ElementResult, Status
from store.enrolments import find_enrolments
from store.models import ElementResultRow, Enrolment, PlannedActionRow
from store.types import EnrolmentStatus
from store.worklist import WorklistAction

# Everything but the post-discharge phase is meant to be done before the patient goes home.
BEFORE_DISCHARGE = frozenset(PHASES[:PHASES.index("post-discharge")])
_LATE = frozenset({Status.OVERDUE, "late"})


@dataclass(frozen=True)
class NextDue:
    title: str
    due: datetime | None


@dataclass(frozen=True)
class PathwayStatus:
    """One active enrolment at a glance: overdue work, what is due next, compliance so far."""

    enrolment_id: str
    pathway: Pathway
    variant: str | None
    overdue: tuple[str, ...]
    next_due: NextDue | None
    compliance: Ratio
    eras: Ratio | None


@dataclass(frozen=True)
class OpenItem:
    """An element not done before discharge: still open (upcoming, due, overdue) or missed."""

    title: str
    status: Status


def active_enrolments(session: Session, patient_id: str, pathways: Mapping[str, Pathway]) -> list[Enrolment]:
    """The patient's active enrolments on pathways this engine runs."""
    return [e for e in find_enrolments(session=session, patient_ref=f"Patient/{patient_id}",
                                       status=EnrolmentStatus.ACTIVE) if e.pathway_id in pathways]


def pathway_status(session: Session, enrolment: Enrolment, pathway: Pathway, now: datetime) -> PathwayStatus:
    """The enrolment's status now (open work judged against the clock, as the worklist does)."""
    rows = session.exec(select(PlannedActionRow).where(
        col(PlannedActionRow.enrolment_id) == enrolment.id,
        col(PlannedActionRow.status).in_([s.value for s in OPEN_STATUSES]))).all()
    actions = [WorklistAction(*(getattr(row, name) for name in WorklistAction._fields)) for row in rows]
    judged = [(a, live_status(a, now)) for a in sorted(actions, key=_by_due)]
    overdue = tuple(a.title for a, status in judged if status in _LATE)
    upcoming = [a for a, status in judged if status not in _LATE]
    next_due = NextDue(upcoming[0].title, upcoming[0].due) if upcoming else None
    by_element = {r.element_id: element_ratio(_result(r)) for r in _results(session, enrolment.id)}
    items = eras_item_of(pathway)
    eras = sum(item_ratios(by_element, items).values(), Ratio()) if items else None
    variant = "/".join(str(v) for name, v in (enrolment.parameters or {}).items()
                       if name in pathway.parameters and not pathway.parameters[name].setting) or None
    return PathwayStatus(enrolment.id, pathway, variant, overdue, next_due,
                         sum(by_element.values(), Ratio()), eras)


def open_before_discharge(session: Session, enrolment: Enrolment, pathway: Pathway) -> list[OpenItem]:
    """Elements of the phases before discharge still open or missed, in the pathway's order."""
    order = {el.id: i for i, el in enumerate(pathway.elements)}
    wanted = OPEN_STATUSES | {Status.MISSED}
    rows = [r for r in _results(session, enrolment.id)
            if r.phase in BEFORE_DISCHARGE and r.status in wanted and r.element_id in order]
    rows.sort(key=lambda r: order[r.element_id])
    return [OpenItem(pathway.element(r.element_id).title, Status(r.status)) for r in rows]


def _results(session: Session, enrolment_id: str) -> list[ElementResultRow]:
    return list(session.exec(select(ElementResultRow).where(
        col(ElementResultRow.enrolment_id) == enrolment_id)))


def _result(row: ElementResultRow) -> ElementResult:
    return ElementResult(row.element_id, row.phase, row.category, Status(row.status),
                         counts="done" if row.counts == "done" else "not-done" if row.counts else None)


def _by_due(action: WorklistAction) -> tuple[bool, datetime]:
    """Earliest due (else opening) first, undated last."""
    when = action.due or action.opens
    return (when is None, when or datetime.max)
