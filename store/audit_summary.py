"""The audit report from stored results: the engine's Ratio and cohort arithmetic over summed counts.

The stored `counts` and `missing` columns are the engine's own decisions per element, so summing
them in SQL is the engine's arithmetic; patient-level aggregation (overall, the high-compliance
share, the trend, outcome groups) goes through `engine.compliance.cohort_compliance` and
`engine.audit`. Exports rebuild `AuditCase`s and run `engine.audit.audit_report` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from sqlmodel import Session

from engine.audit import (
    AuditCase,
    Completeness,
    ElementSummary,
    MonthTrend,
    OutcomeGroup,
    PatientRow,
    compare_outcomes,
    elements_in_order,
    eras_item_of,
    over_missing_limit,
)
from engine.audit_cells import Breakdown, DeclinedNotApplicable, not_applicable_declines
from engine.compliance import PatientCompliance, Ratio, cohort_compliance, item_ratios
from engine.facts import PatientFacts
from engine.model import PHASES, Pathway
from engine.results import ElementResult, Evaluation, Status
from store.audit_queries import (
    CohortFilter,
    ElementCount,
    PatientCount,
    cohort_episodes,
    cohort_outcomes,
    counted_results,
    declined_rows,
    done_late_by_episode,
    element_counts,
    episode_results,
    patient_counts,
)
from store.models import AuditEpisode, ElementResultRow
from store.results import occurrence_from_json, stored_outcomes


@dataclass(frozen=True)
class PatientSummary:
    enrolment_id: str
    patient_ref: str
    month: str | None
    compliance: Ratio
    missing: int
    outcomes: Mapping[str, Any] | None = None
    done_late: int = 0
    by_item: Mapping[int, Ratio] | None = None  # None: the pathway maps no ERAS item

    @property
    def eras(self) -> Ratio | None:
        return None if self.by_item is None else sum(self.by_item.values(), Ratio())

    @property
    def breakdown(self) -> Breakdown:
        c = self.compliance
        return Breakdown(c.done, self.done_late, c.counted - c.done - self.done_late - self.missing,
                         self.missing)


@dataclass(frozen=True)
class StoredAudit:
    """What the dashboard, the API and the terminal report show for one cohort."""

    pathway_id: str
    pathway_version: int
    high_threshold: float
    elements: tuple[ElementSummary, ...]
    phases: Mapping[str, Ratio]
    overall: Ratio
    high: Ratio
    patients: tuple[PatientSummary, ...]
    trend: tuple[MonthTrend, ...]
    completeness: Completeness
    outcomes: tuple[OutcomeGroup, OutcomeGroup] | None
    eras: Ratio | None = None
    by_item: Mapping[int, Ratio] = field(default_factory=dict)
    breakdown: Breakdown = Breakdown()
    phase_breakdown: Mapping[str, Breakdown] = field(default_factory=dict)
    declined_not_applicable: tuple[DeclinedNotApplicable, ...] = ()


def stored_audit(pathway: Pathway, *, session: Session, cohort: CohortFilter, tz: tzinfo,
                 unenrolled: int = 0, top_missing: int = 5, with_outcomes: bool = True) -> StoredAudit:
    """The audit of the cohort; coverage counts `unenrolled` patients who had the procedure too."""
    counts = {c.element_id: c for c in element_counts(session=session, cohort=cohort)}
    patients = _patients(pathway, session=session, cohort=cohort, tz=tz, with_outcomes=with_outcomes)
    threshold = pathway.audit.high_compliance
    scores = {p.enrolment_id: _compliance(p) for p in patients}
    report = cohort_compliance(scores.values(), high_threshold=threshold)
    declined = _declined(session, cohort)
    elements = _elements(pathway, counts, declined)
    phases = _phases(elements)
    return StoredAudit(
        pathway_id=pathway.id, pathway_version=pathway.version, high_threshold=threshold,
        elements=elements, phases=phases, overall=report.overall, high=report.high,
        patients=patients, trend=_trend(patients, scores, threshold),
        completeness=_completeness(elements, len(patients), unenrolled, top_missing,
                                   pathway.audit.missing_data_limit),
        outcomes=_outcome_groups(patients, scores, threshold) if with_outcomes and any(
            p.outcomes is not None for p in patients) else None,
        eras=report.eras, by_item=report.by_item,
        breakdown=sum((e.breakdown for e in elements), Breakdown()),
        phase_breakdown={p: sum((e.breakdown for e in elements if e.phase == p), Breakdown())
                         for p in phases},
        declined_not_applicable=tuple(DeclinedNotApplicable(*key, n)
                                      for key, n in sorted(declined.items())))


def _patients(pathway: Pathway, *, session: Session, cohort: CohortFilter, tz: tzinfo,
              with_outcomes: bool) -> tuple[PatientSummary, ...]:
    rows = patient_counts(session=session, cohort=cohort)
    outcomes = cohort_outcomes(session=session, cohort=cohort) if with_outcomes else {}
    late = done_late_by_episode(session=session, cohort=cohort)
    items = eras_item_of(pathway)
    results = counted_results(session=session, cohort=cohort, element_ids=list(items))
    return tuple(PatientSummary(
        r.enrolment_id, r.patient_ref, _month(r, tz), Ratio(r.done, r.counted), r.missing,
        outcomes.get(r.enrolment_id), late.get(r.enrolment_id, 0),
        _items(results.get(r.enrolment_id, {}), items) if items else None) for r in rows)


def _items(counts: Mapping[str, str], items: Mapping[str, int]) -> dict[int, Ratio]:
    by_element = {e: Ratio(1 if c == "done" else 0, 1) for e, c in counts.items()}
    return item_ratios(by_element, items)


def _declined(session: Session, cohort: CohortFilter) -> dict[tuple[str, str, str], int]:
    """Patients per (element, ward, reason) declined as not applicable (`engine.audit`'s rule
    on the stored occurrences)."""
    out: dict[tuple[str, str, str], int] = {}
    for element_id, ward, occurrences in declined_rows(session=session, cohort=cohort):
        result = ElementResult(element_id, "", "", Status.DECLINED, tuple(
            occurrence_from_json("", element_id, o) for o in occurrences))
        for reason in set(not_applicable_declines(result)):
            out[(element_id, ward, reason)] = out.get((element_id, ward, reason), 0) + 1
    return out


def _month(row: PatientCount, tz: tzinfo) -> str | None:
    return None if row.surgery_start is None else row.surgery_start.astimezone(tz).strftime("%Y-%m")


def _compliance(p: PatientSummary) -> PatientCompliance:
    return PatientCompliance(p.patient_ref, p.compliance, {}, {}, dict(p.by_item or {}), p.eras)


def _elements(pathway: Pathway, counts: Mapping[str, ElementCount],
              declined: Mapping[tuple[str, str, str], int]) -> tuple[ElementSummary, ...]:
    items = eras_item_of(pathway)
    out = []
    for el in elements_in_order(pathway):
        c = counts.get(el.id) or ElementCount(el.id, el.phase, 0, 0, 0)
        split = Breakdown(c.done, c.done_late, c.counted - c.done - c.done_late - c.missing, c.missing)
        reasons: dict[str, int] = {}
        for (element_id, _, reason), n in declined.items():
            if element_id == el.id:
                reasons[reason] = reasons.get(reason, 0) + n
        out.append(ElementSummary(el.id, el.title, el.phase, Ratio(c.done, c.counted),
                                  Ratio(c.missing, c.counted), split, dict(sorted(reasons.items())),
                                  items.get(el.id)))
    return tuple(out)


def _phases(elements: Sequence[ElementSummary]) -> dict[str, Ratio]:
    by_phase: dict[str, Ratio] = {}
    for e in elements:
        by_phase[e.phase] = by_phase.get(e.phase, Ratio()) + e.compliance
    return {p: by_phase[p] for p in PHASES if by_phase.get(p, Ratio()).counted}


def _trend(patients: Sequence[PatientSummary], scores: Mapping[str, PatientCompliance],
           threshold: float) -> tuple[MonthTrend, ...]:
    months: dict[str, list[PatientCompliance]] = {}
    for p in patients:
        if p.month is not None:
            months.setdefault(p.month, []).append(scores[p.enrolment_id])
    out = []
    for month in sorted(months):
        part = cohort_compliance(months[month], high_threshold=threshold)
        out.append(MonthTrend(month, len(months[month]), part.overall, part.high))
    return tuple(out)


def _completeness(elements: Sequence[ElementSummary], patients: int, unenrolled: int,
                  top: int, limit: float) -> Completeness:
    """EIAS data quality; ranked like `engine.audit`: most missing, then share missing, then order."""
    by_element = {e.element_id: e.missing for e in elements}
    order = {e.element_id: i for i, e in enumerate(elements)}
    ranked = sorted((item for item in by_element.items() if item[1].done),
                    key=lambda item: (-item[1].done, -(item[1].value or 0), order[item[0]]))
    procedures = patients + unenrolled
    coverage = Ratio(patients, procedures) if procedures else None
    return Completeness(coverage, sum(by_element.values(), Ratio()), by_element, tuple(ranked[:top]),
                        limit, over_missing_limit(by_element, limit))


def _outcome_groups(patients: Sequence[PatientSummary], scores: Mapping[str, PatientCompliance],
                    threshold: float) -> tuple[OutcomeGroup, OutcomeGroup]:
    rows = [PatientRow(p.patient_ref, {}, scores[p.enrolment_id], {}, frozenset(),
                       stored_outcomes(p.patient_ref, p.outcomes))
            for p in patients if p.outcomes is not None]
    return compare_outcomes(rows, threshold)


def stored_cases(*, session: Session, cohort: CohortFilter,
                 label: Callable[[str], str] | None = None) -> list[AuditCase]:
    """The cohort's episodes as engine `AuditCase`s rebuilt from stored results (for exports);
    `label` turns a patient reference into the id shown (a pseudonym), else the id itself."""
    episodes = cohort_episodes(session=session, cohort=cohort)
    results = episode_results(session=session, enrolment_ids=[e.enrolment_id for e in episodes])
    return [_case(e, results[e.enrolment_id], label) for e in episodes]


def _case(ep: AuditEpisode, rows: Iterable[ElementResultRow],
          label: Callable[[str], str] | None) -> AuditCase:
    patient_id = label(ep.patient_ref) if label else ep.patient_ref.split("/", 1)[-1]
    elements = tuple(ElementResult(r.element_id, r.phase, r.category, Status(r.status), tuple(
        occurrence_from_json(ep.enrolment_id, r.element_id, o) for o in r.occurrences or ()),
        counts=r.counts)  # type: ignore[arg-type]
                     for r in rows)
    evaluation = Evaluation(
        pathway_id=ep.pathway_id, pathway_version=ep.pathway_version, patient_id=patient_id,
        enrolment_id=ep.enrolment_id, now=ep.updated_at, anchors={"surgery_start": ep.surgery_start},
        variables=dict(ep.parameters or {}), elements=elements, actions=(), next_change_at=None)
    facts = PatientFacts(patient_id=patient_id, enrolment_id=ep.enrolment_id, sex=ep.sex)
    return AuditCase(facts, evaluation, {"ward": ep.ward or "", "surgeon": ep.surgeon or ""})
