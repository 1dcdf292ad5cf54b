"""The audit's reads: a cohort filter, and sums of the stored `counts` grouped by element and patient."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, String, and_, case, func, literal, literal_column, null
from sqlalchemy import select as sa_select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, col, select

from engine.audit import months_from
from engine.audit_cells import Breakdown
from engine.compliance import Ratio, Score
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


class scanned(FunctionElement[str]):  # noqa: N801 (a SQL construct, named like func.*)
    """A column that SQLite must not look rows up by (a unary +): the join then scans the
    results' own index and looks each episode up by its key. Without statistics SQLite would
    rather walk the cohort's episodes and read every result row from the table. Other
    databases get the column as it is."""

    type = String()
    inherit_cache = True


@compiles(scanned)
def _scanned(element: scanned, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(scanned, "sqlite")
def _scanned_sqlite(element: scanned, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


def _joined(query: Any, cohort: CohortFilter, *, scan: bool = True) -> Any:
    """The query over the cohort's element results; `scan`: read the results' index through
    (per element: every episode), else look the results up episode by episode."""
    result = col(ElementResultRow.enrolment_id)
    return (query.join(AuditEpisode, col(AuditEpisode.enrolment_id) == (scanned(result) if scan else result))
            .where(*cohort_conditions(cohort)))


@dataclass(frozen=True)
class ElementCount:
    """Per element: done, counted and missing as the engine decided; done late (status)."""

    element_id: str
    done: int
    counted: int
    missing: int
    done_late: int = 0


def element_counts(*, session: Session, cohort: CohortFilter) -> list[ElementCount]:
    """Per element over the cohort: patients done, counted (the engine's `counts`), missing
    (these three read only the covering index), and done late (a partial index)."""
    row = ElementResultRow
    query = _joined(sa_select(col(row.element_id), func.sum(case((col(row.counts) == "done", 1), else_=0)),
                              func.count(col(row.counts)), func.sum(case((col(row.missing), 1), else_=0))),
                    cohort, scan=_most_episodes(session, cohort)).group_by(col(row.element_id))
    # The status as a literal: SQLite uses a partial index only for a condition it can read.
    late = _joined(sa_select(col(row.element_id), func.count()), cohort).where(
        col(row.status) == literal_column(f"'{Status.DONE_LATE.value}'")).group_by(col(row.element_id))
    done_late = {e: int(n) for e, n in session.execute(late)}
    return [ElementCount(e, int(d or 0), int(c or 0), int(m or 0), done_late.get(e, 0))
            for e, d, c, m in session.execute(query)]


def _most_episodes(session: Session, cohort: CohortFilter) -> bool:
    """Whether SQLite should read every result through the index (`scanned`): when the cohort
    holds most episodes (at three quarters, scanning all and looking up each result's episode
    costs what reading the cohort's result rows one episode at a time does). A month or a ward
    is read episode by episode. Other databases plan the join themselves."""
    if session.get_bind().dialect.name != "sqlite":
        return True
    cohort_size, total = session.execute(sa_select(
        func.sum(case((and_(*cohort_conditions(cohort)), 1), else_=0)), func.count())
        .select_from(AuditEpisode)).one()
    return 4 * int(cohort_size or 0) >= 3 * int(total or 0)


def declined_rows(*, session: Session, cohort: CohortFilter) -> list[tuple[str, str, list[Any]]]:
    """(element id, ward, occurrences) of the cohort's element results that have a decline."""
    query = _joined(sa_select(col(ElementResultRow.element_id), col(AuditEpisode.ward),
                              col(ElementResultRow.occurrences)), cohort).where(
        col(ElementResultRow.decline_reason).is_not(None))
    return [(e, w or "", list(o or [])) for e, w, o in session.execute(query)]


class PatientCount(NamedTuple):
    """One episode: its surgery month (local), elements done, counted, missing and done late;
    ERAS items done and counted (None when the pathway maps no item); its stored outcome
    values (None: not computed or not asked for)."""

    enrolment_id: str
    patient_ref: str
    month: str | None
    done: int
    counted: int
    missing: int
    done_late: int
    eras_done: int | None
    eras_counted: int | None
    outcomes: dict[str, Any] | None

    @property
    def score(self) -> Score:
        return self.done, self.counted, self.eras_done, self.eras_counted

    @property
    def compliance(self) -> Ratio:
        return Ratio(self.done, self.counted)

    @property
    def eras(self) -> Ratio | None:
        """ERAS items done of counted; None: the pathway maps no item."""
        return None if self.eras_counted is None else Ratio(self.eras_done or 0, self.eras_counted)

    @property
    def breakdown(self) -> Breakdown:
        return Breakdown(self.done, self.done_late, self.counted - self.done - self.done_late - self.missing,
                         self.missing)


@dataclass(frozen=True)
class ItemCounts:
    """Per ERAS item: patients done and counted; whether some episode has no stored masks."""

    by_item: dict[int, tuple[int, int]]
    unmasked: bool


def item_counts(*, session: Session, cohort: CohortFilter, items: Mapping[str, int]) -> ItemCounts:
    """Per ERAS item over the cohort: patients with the item done, and counted, from the
    episodes' item masks (one pass over episodes, which also finds the episodes without
    masks); episodes without masks from their results."""
    ep = AuditEpisode
    numbers = sorted(set(items.values()))
    if not numbers:
        return ItemCounts({}, False)
    sums = [func.sum(case((col(mask).op("&")(1 << n) != 0, 1), else_=0))
            for n in numbers for mask in (ep.items_done, ep.items_counted)]
    unmasked = func.sum(case((col(ep.items_counted).is_(None), 1), else_=0))
    row = session.execute(sa_select(unmasked, *sums).where(*cohort_conditions(cohort))).one()
    out = {n: (int(row[2 * i + 1] or 0), int(row[2 * i + 2] or 0)) for i, n in enumerate(numbers)}
    without = bool(row[0])
    if without:
        per_item = _per_item(cohort, items)
        query = sa_select(per_item.c.item, func.sum(case((per_item.c.not_done == 0, 1), else_=0)),
                          func.count()).group_by(per_item.c.item)
        for n, done, counted in session.execute(query):
            out[int(n)] = (out[int(n)][0] + int(done), out[int(n)][1] + int(counted))
    return ItemCounts({n: ratio for n, ratio in out.items() if ratio[1]}, without)


def _per_item(cohort: CohortFilter, items: Mapping[str, int]) -> Any:
    """(enrolment, item, counted elements not done) of the cohort's episodes stored without item
    masks: `engine.compliance.item_ratios` in SQL (counted when any element of the item counts,
    done when none of those is not done)."""
    row, ep = ElementResultRow, AuditEpisode
    item = case(dict(items), value=col(row.element_id))
    not_done = func.sum(case((col(row.counts) != "done", 1), else_=0)).label("not_done")
    return _joined(sa_select(col(row.enrolment_id).label("enrolment_id"), item.label("item"), not_done),
                   cohort, scan=False).where(col(ep.items_counted).is_(None), col(row.counts).is_not(None),
                                             col(row.element_id).in_(list(items))).group_by(
        col(row.enrolment_id), item).subquery("per_item")


def _eras_without_masks(cohort: CohortFilter, items: Mapping[str, int]) -> Any:
    per_item = _per_item(cohort, items)
    return (sa_select(per_item.c.enrolment_id,
                      func.sum(case((per_item.c.not_done == 0, 1), else_=0)).label("done"),
                      func.count().label("counted"))
            .group_by(per_item.c.enrolment_id).subquery("eras"))


OUT_OF_RANGE = "?"  # a surgery month the statement's bounds did not cover (written meanwhile)


def surgery_months(*, session: Session, cohort: CohortFilter, tz: tzinfo) -> list[tuple[str, datetime]]:
    """The local months from the cohort's first surgery to its last, each with its end."""
    first, last = session.execute(sa_select(func.min(col(AuditEpisode.surgery_start)),
                                            func.max(col(AuditEpisode.surgery_start)))
                                  .where(*cohort_conditions(cohort))).one()
    return [] if first is None else months_from(first, last, tz)


def month_label(months: Sequence[tuple[str, datetime]]) -> ColumnElement[str | None]:
    """The local month of the episode's surgery (`engine.audit.month_of`) in SQL: the first
    month the surgery starts before the end of; null without a surgery."""
    start = col(AuditEpisode.surgery_start)
    return case((start.is_(None), null()), *((start < end, literal(month)) for month, end in months),
                else_=literal(OUT_OF_RANGE))


def patient_counts(*, session: Session, cohort: CohortFilter, items: Mapping[str, int], tz: tzinfo,
                   unmasked: bool, with_outcomes: bool) -> list[PatientCount]:
    """Per episode of the cohort, ordered by surgery start, in one statement: its surgery month,
    the patient compliance stored with the episode (ERAS items summed from results for
    episodes stored without masks, `unmasked` says whether there are any), and the outcomes."""
    ep = AuditEpisode
    for _ in range(3):  # an episode written between the bounds and the rows: bounds again
        query = sa_select(col(ep.enrolment_id), col(ep.patient_ref),
                          month_label(surgery_months(session=session, cohort=cohort, tz=tz)),
                          col(ep.done), col(ep.counted), col(ep.missing), col(ep.done_late),
                          col(ep.items_done), col(ep.items_counted))
        summed = bool(items) and unmasked
        if summed:
            eras = _eras_without_masks(cohort, items)
            query = query.add_columns(eras.c.done, eras.c.counted).outerjoin(
                eras, eras.c.enrolment_id == col(ep.enrolment_id))
        if with_outcomes:
            query = query.add_columns(col(AuditOutcome.values)).outerjoin(
                AuditOutcome, col(AuditOutcome.enrolment_id) == col(ep.enrolment_id))
        query = query.where(*cohort_conditions(cohort)).order_by(col(ep.surgery_start), col(ep.patient_ref))
        rows = session.connection().execute(query).all()
        if not any(r[2] == OUT_OF_RANGE for r in rows):
            return [PatientCount(r[0], r[1], r[2], r[3], r[4], r[5], r[6], *_eras(r, bool(items), summed),
                                 r[-1] if with_outcomes else None) for r in rows]
    raise RuntimeError("episodes kept being written outside the cohort's surgery months")


def _eras(r: Any, items: bool, summed: bool) -> tuple[int | None, int | None]:
    """ERAS items done and counted: bits of the stored masks, else the sums from results."""
    if not items:
        return None, None
    if r[8] is not None:
        return r[7].bit_count(), r[8].bit_count()
    return (int(r[9] or 0), int(r[10] or 0)) if summed else (0, 0)


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
