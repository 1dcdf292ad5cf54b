"""The audit's reads: a cohort filter, and sums of the stored `counts` grouped by element and patient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.results import Status
from store.models import AuditEpisode, AuditOutcome, ElementResultRow


@dataclass(frozen=True)
class CohortFilter:
    """Which episodes: a pathway (and version), surgery in [start, end), and cohort attributes."""

    pathway_id: str
    pathway_version: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    variant: str | None = None
    ward: str | None = None
    surgeon: str | None = None
    sex: str | None = None
    age_band: tuple[int, int | None] | None = None
    apfel: int | None = None


def parse_age_band(text: str) -> tuple[int, int | None]:
    """'60-69' -> (60, 69); '80+' -> (80, None)."""
    if text.endswith("+"):
        return int(text[:-1]), None
    low, _, high = text.partition("-")
    return int(low), int(high)


def cohort_conditions(f: CohortFilter) -> list[ColumnElement[bool]]:
    ep = AuditEpisode
    where: list[ColumnElement[bool]] = [col(ep.pathway_id) == f.pathway_id]
    if f.pathway_version is not None:
        where.append(col(ep.pathway_version) == f.pathway_version)
    if f.start is not None:
        where.append(col(ep.surgery_start) >= f.start)
    if f.end is not None:
        where.append(col(ep.surgery_start) < f.end)
    for column, value in ((ep.variant, f.variant), (ep.ward, f.ward), (ep.surgeon, f.surgeon),
                          (ep.sex, f.sex), (ep.apfel, f.apfel)):
        if value is not None:
            where.append(col(column) == value)
    if f.age_band is not None:
        low, high = f.age_band
        where.append(col(ep.age_at_surgery) >= low)
        if high is not None:
            where.append(col(ep.age_at_surgery) <= high)
    return where


def _sums() -> tuple[Any, Any, Any, Any]:
    row = ElementResultRow
    done = func.sum(case((col(row.counts) == "done", 1), else_=0))
    counted = func.count(col(row.counts))
    missing = func.sum(case((col(row.missing), 1), else_=0))
    late = func.sum(case((col(row.status) == Status.DONE_LATE.value, 1), else_=0))
    return done, counted, missing, late


def _joined(query: Any, cohort: CohortFilter) -> Any:
    return (query.join(AuditEpisode, col(AuditEpisode.enrolment_id) == col(ElementResultRow.enrolment_id))
            .where(*cohort_conditions(cohort)))


@dataclass(frozen=True)
class ElementCount:
    """Per element: done, counted and missing as the engine decided; done late (status)."""

    element_id: str
    phase: str
    done: int
    counted: int
    missing: int
    done_late: int = 0


def element_counts(*, session: Session, cohort: CohortFilter) -> list[ElementCount]:
    """Per element over the cohort: patients done, counted (the engine's `counts`), missing,
    done late."""
    done, counted, missing, late = _sums()
    # SQLAlchemy's select: SQLModel's typed overloads stop at four columns.
    query = _joined(sa_select(col(ElementResultRow.element_id), col(ElementResultRow.phase), done,
                              counted, missing, late), cohort).group_by(
        col(ElementResultRow.element_id), col(ElementResultRow.phase))
    return [ElementCount(e, p, int(d or 0), int(c or 0), int(m or 0), int(n or 0))
            for e, p, d, c, m, n in session.execute(query)]


def done_late_by_episode(*, session: Session, cohort: CohortFilter) -> dict[str, int]:
    """Elements done late per episode of the cohort (episodes with none are left out)."""
    late = func.sum(case((col(ElementResultRow.status) == Status.DONE_LATE.value, 1), else_=0))
    query = _joined(sa_select(col(ElementResultRow.enrolment_id), late), cohort).group_by(
        col(ElementResultRow.enrolment_id))
    return {e: int(n) for e, n in session.execute(query) if n}


def counted_results(*, session: Session, cohort: CohortFilter,
                    element_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """enrolment id -> element id -> the engine's `counts`, for these elements where counted
    (the ERAS items' elements: `engine.compliance.item_ratios` groups them)."""
    out: dict[str, dict[str, str]] = {}
    if not element_ids:
        return out
    query = _joined(sa_select(col(ElementResultRow.enrolment_id), col(ElementResultRow.element_id),
                              col(ElementResultRow.counts)), cohort).where(
        col(ElementResultRow.counts).is_not(None),
        col(ElementResultRow.element_id).in_(list(element_ids)))
    for enrolment_id, element_id, counts in session.execute(query):
        out.setdefault(enrolment_id, {})[element_id] = counts
    return out


def declined_rows(*, session: Session, cohort: CohortFilter) -> list[tuple[str, str, list[Any]]]:
    """(element id, ward, occurrences) of the cohort's element results that have a decline."""
    query = _joined(sa_select(col(ElementResultRow.element_id), col(AuditEpisode.ward),
                              col(ElementResultRow.occurrences)), cohort).where(
        col(ElementResultRow.decline_reason).is_not(None))
    return [(e, w or "", list(o or [])) for e, w, o in session.execute(query)]


@dataclass(frozen=True)
class PatientCount:
    enrolment_id: str
    patient_ref: str
    surgery_start: datetime | None
    done: int
    counted: int
    missing: int


def patient_counts(*, session: Session, cohort: CohortFilter) -> list[PatientCount]:
    """Per episode of the cohort: elements done, counted and missing (the engine's patient
    compliance, stored with the episode), ordered by surgery start."""
    ep = AuditEpisode
    query = (sa_select(col(ep.enrolment_id), col(ep.patient_ref), col(ep.surgery_start),
                       col(ep.done), col(ep.counted), col(ep.missing))
             .where(*cohort_conditions(cohort))
             .order_by(col(ep.surgery_start), col(ep.patient_ref)))
    return [PatientCount(*row) for row in session.execute(query)]


def cohort_outcomes(*, session: Session, cohort: CohortFilter) -> dict[str, dict[str, Any]]:
    """Stored outcome values by enrolment id, for the cohort's episodes that have them."""
    query = (select(AuditOutcome.enrolment_id, AuditOutcome.values)
             .join(AuditEpisode, col(AuditEpisode.enrolment_id) == col(AuditOutcome.enrolment_id))
             .where(*cohort_conditions(cohort)))
    return {e: dict(v or {}) for e, v in session.exec(query)}


def cohort_episodes(*, session: Session, cohort: CohortFilter) -> list[AuditEpisode]:
    query = (select(AuditEpisode).where(*cohort_conditions(cohort))
             .order_by(col(AuditEpisode.surgery_start), col(AuditEpisode.patient_ref)))
    return list(session.exec(query))


def episode_results(*, session: Session,
                    enrolment_ids: Sequence[str]) -> dict[str, list[ElementResultRow]]:
    """Stored element results of these episodes, by enrolment id."""
    out: dict[str, list[ElementResultRow]] = {e: [] for e in enrolment_ids}
    for start in range(0, len(enrolment_ids), 500):
        chunk = list(enrolment_ids[start:start + 500])
        query = select(ElementResultRow).where(col(ElementResultRow.enrolment_id).in_(chunk))
        for row in session.exec(query):
            out[row.enrolment_id].append(row)
    return out


def episode(*, session: Session, enrolment_id: str) -> AuditEpisode | None:
    return session.get(AuditEpisode, enrolment_id)


def episode_outcome(*, session: Session, enrolment_id: str) -> dict[str, Any] | None:
    row = session.get(AuditOutcome, enrolment_id)
    return None if row is None else dict(row.values or {})
