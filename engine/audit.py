"""A cohort's compliance audit: compliance, trend, completeness, drill-down and outcomes by group."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from statistics import fmean, median

from engine.audit_cells import (
    Breakdown,
    Cell,
    DeclinedNotApplicable,
    element_cell,
    is_missing,
    not_applicable_declines,
)
from engine.compliance import (
    ComplianceReport,
    PatientCompliance,
    Ratio,
    Score,
    cohort_compliance,
    cohort_figures,
    is_high,
    patient_compliance,
    score_of,
)
from engine.facts import PatientFacts
from engine.model import PHASES, Element, Pathway
from engine.outcomes import OutcomeDefinitions, OutcomeValue, PatientOutcomes, patient_outcomes
from engine.plan import plan_of
from engine.results import Evaluation, Status

SURGERY_MONTH = "surgery_month"


@dataclass(frozen=True)
class AuditCase:
    """One patient's episode: what the engine knew, what it decided, and how the cohort is cut."""

    facts: PatientFacts
    evaluation: Evaluation
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PatientRow:
    """One patient in the report: compliance, each element's cell, and outcomes."""

    patient_id: str
    attributes: Mapping[str, str]
    compliance: PatientCompliance
    cells: Mapping[str, Cell]
    missing: frozenset[str]
    outcomes: PatientOutcomes | None = None
    declined_not_applicable: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def breakdown(self) -> Breakdown:
        return Breakdown.of(self.cells.values())


@dataclass(frozen=True)
class ElementSummary:
    """One element over the cohort: compliance, missing data, the split, N/A declines."""

    element_id: str
    title: str
    phase: str
    compliance: Ratio
    missing: Ratio
    breakdown: Breakdown = Breakdown()
    declined_not_applicable: Mapping[str, int] = field(default_factory=dict)
    eras_item: int | None = None  # None: a process measure (in no ERAS item)


@dataclass(frozen=True)
class MonthTrend:
    month: str
    patients: int
    compliance: Ratio
    high: Ratio


@dataclass(frozen=True)
class Completeness:
    """EIAS data quality: coverage of the procedure population, and missing data by element."""

    coverage: Ratio | None
    missing: Ratio
    by_element: Mapping[str, Ratio]
    most_undocumented: tuple[tuple[str, Ratio], ...]
    missing_limit: float = 0.1
    over_limit: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutcomeStat:
    """n patients with the outcome recorded; mean/median when numeric, events/rate when yes-no."""

    name: str
    binary: bool
    n: int
    mean: float | None = None
    median: float | None = None
    events: int | None = None

    @property
    def rate(self) -> float | None:
        return None if self.events is None or self.n == 0 else self.events / self.n


@dataclass(frozen=True)
class OutcomeGroup:
    label: str
    patients: int
    stats: Mapping[str, OutcomeStat]


@dataclass(frozen=True)
class AuditReport:
    """Everything a quality team reads about one pathway's cohort."""

    pathway_id: str
    pathway_version: int
    high_threshold: float
    filters: Mapping[str, tuple[str, ...]]
    compliance: ComplianceReport
    patients: tuple[PatientRow, ...]
    elements: tuple[ElementSummary, ...]
    phases: Mapping[str, Ratio]
    trend: tuple[MonthTrend, ...]
    completeness: Completeness
    outcomes: tuple[OutcomeGroup, OutcomeGroup] | None = None
    breakdown: Breakdown = Breakdown()
    phase_breakdown: Mapping[str, Breakdown] = field(default_factory=dict)
    declined_not_applicable: tuple[DeclinedNotApplicable, ...] = ()


def case_attributes(case: AuditCase, *, tz: tzinfo = UTC,
                    surgery_anchor: str = "surgery_start") -> dict[str, str]:
    """The case's attributes, plus the surgery month and the pathway's parameters (variant)
    worked out by the evaluation, unless the caller gave them."""
    derived: dict[str, str] = {k: str(v) for k, v in case.evaluation.variables.items()
                               if isinstance(v, str)}
    surgery = case.evaluation.anchors.get(surgery_anchor)
    if surgery is not None:
        derived[SURGERY_MONTH] = month_of(surgery, tz)
    return {**derived, **case.attributes}


Filters = Mapping[str, str | Collection[str]]


def _normalise(filters: Filters | None) -> dict[str, tuple[str, ...]]:
    return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in (filters or {}).items()}


def _row(case: AuditCase, attributes: Mapping[str, str], outcomes: OutcomeDefinitions | None,
         tz: tzinfo, items: Mapping[str, int]) -> PatientRow:
    ev = case.evaluation
    return PatientRow(
        patient_id=ev.patient_id, attributes=attributes, compliance=patient_compliance(ev, items),
        cells={r.element_id: element_cell(r) for r in ev.elements},
        missing=frozenset(r.element_id for r in ev.elements if is_missing(r)),
        outcomes=None if outcomes is None else patient_outcomes(
            case.facts, ev, definitions=outcomes, tz=tz),
        declined_not_applicable={r.element_id: reasons for r in ev.elements
                                 if (reasons := not_applicable_declines(r))})


def audit_report(pathway: Pathway, cases: Iterable[AuditCase], *, procedures: int | None = None,
                 filters: Filters | None = None, outcomes: OutcomeDefinitions | None = None,
                 tz: tzinfo = UTC, surgery_anchor: str = "surgery_start",
                 top_missing: int = 5) -> AuditReport:
    """Audit the cases of `pathway` matching `filters` (attribute -> accepted values).

    `procedures` is how many patients had the procedure in the period (for coverage); `tz` is
    the hospital's zone (surgery month, local days of outcomes)."""
    wanted = _normalise(filters)
    items = eras_item_of(pathway)
    rows = []
    for case in cases:
        if (case.evaluation.pathway_id, case.evaluation.pathway_version) != (pathway.id, pathway.version):
            raise ValueError(f"patient {case.evaluation.patient_id} was evaluated on "
                             f"{case.evaluation.pathway_id} v{case.evaluation.pathway_version}")
        attrs = case_attributes(case, tz=tz, surgery_anchor=surgery_anchor)
        if all(attrs.get(key) in values for key, values in wanted.items()):
            rows.append(_row(case, attrs, outcomes, tz, items))
    threshold = pathway.audit.high_compliance
    ordered = elements_in_order(pathway)
    report = cohort_compliance((r.compliance for r in rows), high_threshold=threshold)
    completeness = cohort_completeness(
        ordered, _missing_by_element(ordered, rows, report), patients=len(rows),
        procedures=procedures, top=top_missing, limit=pathway.audit.missing_data_limit)
    elements = tuple(_element_summary(el, rows, report, completeness, items.get(el.id))
                     for el in ordered)
    phases: dict[str, Ratio] = {p: report.by_phase[p] for p in PHASES if p in report.by_phase}
    return AuditReport(
        pathway_id=pathway.id, pathway_version=pathway.version, high_threshold=threshold,
        filters=wanted, compliance=report, patients=tuple(rows), elements=elements,
        phases=phases, trend=month_trend(
            ((r.attributes.get(SURGERY_MONTH), score_of(r.compliance)) for r in rows), threshold),
        completeness=completeness,
        outcomes=None if outcomes is None else compare_outcomes(rows, threshold),
        breakdown=sum((e.breakdown for e in elements), Breakdown()),
        phase_breakdown={p: sum((e.breakdown for e in elements if e.phase == p), Breakdown())
                         for p in phases},
        declined_not_applicable=_declined_by_ward(rows),
    )


def eras_item_of(pathway: Pathway) -> dict[str, int]:
    """Element id -> its ERAS item number (the pathway's `audit.eras_items`)."""
    return dict(plan_of(pathway).eras_items)


def _element_summary(el: Element, rows: Sequence[PatientRow], report: ComplianceReport,
                     completeness: Completeness, item: int | None) -> ElementSummary:
    reasons: dict[str, int] = {}
    for r in rows:
        for reason in set(r.declined_not_applicable.get(el.id, ())):
            reasons[reason] = reasons.get(reason, 0) + 1
    return ElementSummary(el.id, el.title, el.phase, report.by_element.get(el.id, Ratio()),
                          completeness.by_element[el.id],
                          Breakdown.of(r.cells[el.id] for r in rows if el.id in r.cells),
                          dict(sorted(reasons.items())), item)


def _declined_by_ward(rows: Sequence[PatientRow]) -> tuple[DeclinedNotApplicable, ...]:
    """Patients per (element, ward, reason) declined as not applicable; ward '' when unknown."""
    counts: dict[tuple[str, str, str], int] = {}
    for r in rows:
        ward = r.attributes.get("ward", "")
        for element_id, reasons in r.declined_not_applicable.items():
            for reason in set(reasons):
                key = (element_id, ward, reason)
                counts[key] = counts.get(key, 0) + 1
    return tuple(DeclinedNotApplicable(*key, n) for key, n in sorted(counts.items()))


def elements_in_order(pathway: Pathway) -> tuple[Element, ...]:
    """Elements by phase (pre-admission first), then in pathway order (includes come first there)."""
    rank = {phase: i for i, phase in enumerate(PHASES)}
    return tuple(sorted(pathway.elements, key=lambda el: rank[el.phase]))


def _missing_by_element(elements: Sequence[Element], rows: Sequence[PatientRow],
                        report: ComplianceReport) -> dict[str, Ratio]:
    """Per element: patients with missing data of patients counted."""
    return {el.id: Ratio(sum(1 for r in rows if el.id in r.missing),
                         report.by_element.get(el.id, Ratio()).counted) for el in elements}


def cohort_completeness(elements: Sequence[Element], by_element: Mapping[str, Ratio], *, patients: int,
                        procedures: int | None, top: int, limit: float) -> Completeness:
    """EIAS data quality from missing-of-counted per element (the engine's rows or the store's
    sums): ranked by most missing, then share missing, then pathway order."""
    by_element = {el.id: by_element.get(el.id, Ratio()) for el in elements}
    order = {el.id: i for i, el in enumerate(elements)}
    ranked = sorted((item for item in by_element.items() if item[1].done),
                    key=lambda item: (-item[1].done, -(item[1].value or 0), order[item[0]]))
    coverage = None if procedures is None else Ratio(patients, procedures)
    return Completeness(coverage, sum(by_element.values(), Ratio()), by_element, tuple(ranked[:top]),
                        limit, over_missing_limit(by_element, limit))


def over_missing_limit(by_element: Mapping[str, Ratio], limit: float) -> tuple[str, ...]:
    """Elements whose missing data exceed the EIAS data-quality limit (share of counted)."""
    return tuple(e for e, r in by_element.items() if r.value is not None and r.value > limit)


def month_trend(patients: Iterable[tuple[str | None, Score]],
                threshold: float) -> tuple[MonthTrend, ...]:
    """Compliance and the high share per surgery month, from (month, patient score) pairs;
    patients without a surgery month are left out."""
    months: dict[str, list[Score]] = {}
    for month, score in patients:
        if month is not None:
            months.setdefault(month, []).append(score)
    out = []
    for month in sorted(months):
        part = cohort_figures(months[month], high_threshold=threshold)
        out.append(MonthTrend(month, len(months[month]), part.overall, part.high))
    return tuple(out)


def month_of(instant: datetime, tz: tzinfo) -> str:
    """The local calendar month 'YYYY-MM' of an instant (the surgery month)."""
    return instant.astimezone(tz).strftime("%Y-%m")


def month_bounds(month: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """The instants [start, end) of a local calendar month 'YYYY-MM'."""
    year, number = int(month[:4]), int(month[5:7])
    after = (year + number // 12, number % 12 + 1)
    return (datetime(year, number, 1, tzinfo=tz).astimezone(UTC),
            datetime(*after, 1, tzinfo=tz).astimezone(UTC))


def months_from(first: datetime, last: datetime, tz: tzinfo) -> list[tuple[str, datetime]]:
    """The local months from `first`'s to `last`'s, each with the instant it ends."""
    out = []
    month = month_of(first, tz)
    while True:
        end = month_bounds(month, tz)[1]
        out.append((month, end))
        if end > last:
            return out
        month = month_of(end, tz)


def _stat(name: str, values: list[OutcomeValue], binary: bool) -> OutcomeStat:
    known = [v for v in values if v is not None]
    if binary:
        return OutcomeStat(name, True, len(known), events=sum(1 for v in known if v is True))
    numbers = [float(v) for v in known]
    return OutcomeStat(name, False, len(numbers), fmean(numbers) if numbers else None,
                       median(numbers) if numbers else None)


def compare_outcomes(rows: Sequence[PatientRow],
                     threshold: float) -> tuple[OutcomeGroup, OutcomeGroup]:
    """High (>= threshold) and lower compliance groups of the report's patients."""
    return outcome_groups(((score_of(r.compliance), r.outcomes.values()) for r in rows
                           if r.outcomes is not None), threshold)


def outcome_groups(patients: Iterable[tuple[Score, Mapping[str, OutcomeValue]]], threshold: float,
                   names: Callable[[Mapping[str, OutcomeValue]], Iterable[str]] = list
                   ) -> tuple[OutcomeGroup, OutcomeGroup]:
    """High (>= threshold) and lower compliance groups from (score, outcome values) pairs;
    patients with nothing counted are in neither. The outcomes are `names` of the first
    patient's values (by default its keys); a value a patient lacks is not recorded."""
    members = {True: 0, False: 0}
    known: dict[bool, dict[str, list[OutcomeValue]]] = {True: {}, False: {}}
    binary: set[str] = set()
    wanted: set[str] | None = None
    for score, values in patients:
        high = is_high(score, threshold)
        if high is None:
            continue
        if wanted is None:
            listed = list(names(values))
            wanted = set(listed)
            known = {group: {n: [] for n in listed} for group in (True, False)}
        members[high] += 1
        into = known[high]
        for n, v in values.items():  # the recorded values only: one pass over what is there
            if v is not None and n in wanted:
                into[n].append(v)
                if isinstance(v, bool):
                    binary.add(n)
    groups = tuple(OutcomeGroup(label, members[high], {n: _stat(n, recorded, n in binary)
                                                       for n, recorded in known[high].items()})
                   for label, high in (("high", True), ("lower", False)))
    return groups[0], groups[1]


@dataclass(frozen=True)
class TimelineRow:
    """One element occurrence of one patient (or the element alone when it has none)."""

    element_id: str
    title: str
    phase: str
    occurrence: str | None
    status: Status
    opens: datetime | None = None
    due: datetime | None = None
    closes: datetime | None = None
    done_at: datetime | None = None
    evidence: tuple[str, ...] = ()
    decline_reason: str | None = None
    by: str | None = None
    counts: str | None = None
    note: str | None = None


def patient_timeline(pathway: Pathway, case: AuditCase) -> tuple[TimelineRow, ...]:
    """Drill-down: each element and occurrence with its window, status, proof or decline, and who."""
    by = {t.action_key: t.by for t in case.facts.tasks}
    rows = []
    for result in case.evaluation.elements:
        title = pathway.element(result.element_id).title
        if not result.occurrences:
            rows.append(TimelineRow(result.element_id, title, result.phase, None, result.status,
                                    counts=result.counts, note=result.note))
        for o in result.occurrences:
            rows.append(TimelineRow(result.element_id, title, result.phase, o.occurrence, o.status,
                                    o.opens, o.due, o.closes, o.done_at, o.evidence,
                                    o.decline_reason, by.get(o.key), o.counts))
    return tuple(rows)
