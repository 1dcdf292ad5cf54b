"""The audit report from stored results: the engine's Ratio and cohort arithmetic over summed counts.

The stored `counts` and `missing` columns are the engine's own decisions per element, so summing
them in SQL is the engine's arithmetic (per element, per ERAS item, per patient, in a few
grouped statements); cohort aggregation (overall, the high-compliance share, the trend,
completeness, outcome groups) goes through `engine.compliance` and `engine.audit`, the same
functions the pure-engine report uses. Exports rebuild `AuditCase`s and run
`engine.audit.audit_report` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo

from sqlmodel import Session

from engine.audit import (
    AuditCase,
    Completeness,
    ElementSummary,
    MonthTrend,
    OutcomeGroup,
    cohort_completeness,
    elements_in_order,
    eras_item_of,
    month_trend,
    outcome_groups,
)
from engine.audit_cells import Breakdown, DeclinedNotApplicable, not_applicable_declines
from engine.compliance import Ratio, Score, cohort_figures
from engine.facts import PatientFacts
from engine.model import PHASES, Pathway
from engine.results import ElementResult, Evaluation, Status
from store.audit_queries import (
    CohortFilter,
    ElementCount,
    PatientCount,
    cohort_episodes,
    declined_rows,
    element_counts,
    episode_results,
    item_counts,
    patient_counts,
)
from store.models import AuditEpisode, ElementResultRow
from store.results import occurrence_from_json, stored_outcomes

PatientSummary = PatientCount  # one patient of the report, as the store read it


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
    """The audit of the cohort; coverage counts `unenrolled` patients who had the procedure too.

    SQL sums the engine's stored per-element decisions (per element, per ERAS item, per
    patient); the cohort figures, trend, completeness and outcome groups are `engine.audit`'s."""
    counts = {c.element_id: c for c in element_counts(session=session, cohort=cohort)}
    items = eras_item_of(pathway)
    by_item = item_counts(session=session, cohort=cohort, items=items)
    patients = tuple(patient_counts(session=session, cohort=cohort, items=items, tz=tz,
                                    unmasked=by_item.unmasked, with_outcomes=with_outcomes))
    scores = [p.score for p in patients]
    threshold = pathway.audit.high_compliance
    figures = cohort_figures(scores, high_threshold=threshold)
    declined = _declined(session, cohort)
    elements = _elements(pathway, counts, declined)
    phases = _phases(elements)
    return StoredAudit(
        pathway_id=pathway.id, pathway_version=pathway.version, high_threshold=threshold,
        elements=elements, phases=phases, overall=figures.overall, high=figures.high,
        patients=patients,
        trend=month_trend(zip((p.month for p in patients), scores, strict=True), threshold),
        completeness=cohort_completeness(
            elements_in_order(pathway), {e.element_id: e.missing for e in elements},
            patients=len(patients), procedures=len(patients) + unenrolled if patients or unenrolled else None,
            top=top_missing, limit=pathway.audit.missing_data_limit),
        outcomes=_outcome_groups(patients, scores, threshold),
        eras=figures.eras, by_item={i: Ratio(d, c) for i, (d, c) in sorted(by_item.by_item.items())},
        breakdown=sum((e.breakdown for e in elements), Breakdown()),
        phase_breakdown={p: sum((e.breakdown for e in elements if e.phase == p), Breakdown())
                         for p in phases},
        declined_not_applicable=tuple(DeclinedNotApplicable(*key, n)
                                      for key, n in sorted(declined.items())))


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


def _outcome_groups(patients: Sequence[PatientSummary], scores: Sequence[Score],
                    threshold: float) -> tuple[OutcomeGroup, OutcomeGroup] | None:
    """`engine.audit.outcome_groups` over the stored values: the outcomes are those
    `stored_outcomes` names for the first patient, each value read from the stored ones."""
    pairs = [(s, p.outcomes) for p, s in zip(patients, scores, strict=True) if p.outcomes is not None]
    if not pairs:
        return None
    return outcome_groups(pairs, threshold, names=lambda first: stored_outcomes("", first).values())


def _elements(pathway: Pathway, counts: Mapping[str, ElementCount],
              declined: Mapping[tuple[str, str, str], int]) -> tuple[ElementSummary, ...]:
    items = eras_item_of(pathway)
    out = []
    for el in elements_in_order(pathway):
        c = counts.get(el.id) or ElementCount(el.id, 0, 0, 0)
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
