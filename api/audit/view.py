"""JSON shapes of the audit: ratios with their percent, the report, completeness and a drill-down."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from api.audit.pseudonyms import resource_label
from engine.audit import Completeness, OutcomeGroup
from engine.audit_cells import Breakdown
from engine.compliance import Ratio
from engine.model import Pathway
from store.audit_summary import StoredAudit
from store.models import AuditEpisode, ElementResultRow

Label = Callable[[str], str]


def ratio_json(ratio: Ratio | None) -> dict[str, Any] | None:
    if ratio is None:
        return None
    value = ratio.value
    return {"done": ratio.done, "counted": ratio.counted,
            "percent": None if value is None else round(value * 100, 1)}


def outcomes_json(groups: tuple[OutcomeGroup, OutcomeGroup] | None) -> list[dict[str, Any]] | None:
    if groups is None:
        return None
    return [{"group": g.label, "patients": g.patients, "stats": {
        name: {"n": s.n, "mean": s.mean, "median": s.median, "events": s.events, "rate": s.rate}
        for name, s in g.stats.items()}} for g in groups]


def breakdown_json(b: Breakdown) -> dict[str, int]:
    """Counted results split: done, done late, not done (documented), missing data."""
    return {"done": b.done, "done_late": b.done_late, "not_done": b.not_done, "missing": b.missing,
            "counted": b.counted}


def compliance_json(audit: StoredAudit, label: Label, episode: Label) -> dict[str, Any]:
    """Per element, per phase, per patient, overall (all elements and ERAS items), high share
    (by ERAS items), the done / done late / not done / missing split, declines that made an
    element not applicable, trend by month, outcome groups."""
    return {
        "pathway": audit.pathway_id, "version": audit.pathway_version,
        "high_threshold": audit.high_threshold,
        "overall": ratio_json(audit.overall), "eras": ratio_json(audit.eras),
        "high": ratio_json(audit.high), "breakdown": breakdown_json(audit.breakdown),
        "items": {str(n): ratio_json(r) for n, r in audit.by_item.items()},
        "elements": [{"element": e.element_id, "title": e.title, "phase": e.phase,
                      "eras_item": e.eras_item, **(ratio_json(e.compliance) or {}),
                      "breakdown": breakdown_json(e.breakdown),
                      "declined_not_applicable": dict(e.declined_not_applicable)}
                     for e in audit.elements],
        "phases": {p: ratio_json(r) for p, r in audit.phases.items()},
        "phase_breakdown": {p: breakdown_json(b) for p, b in audit.phase_breakdown.items()},
        "patients": [{"patient": label(p.patient_ref), "episode": episode(p.enrolment_id),
                      "month": p.month, **(ratio_json(p.compliance) or {}), "missing": p.missing,
                      "eras": ratio_json(p.eras), "breakdown": breakdown_json(p.breakdown),
                      "length_of_stay_days": (p.outcomes or {}).get("length_of_stay_days")}
                     for p in audit.patients],
        "declined_not_applicable": [{"element": d.element_id, "ward": d.ward, "reason": d.reason,
                                     "patients": d.patients} for d in audit.declined_not_applicable],
        "trend": [{"month": t.month, "patients": t.patients, "compliance": ratio_json(t.compliance),
                   "high": ratio_json(t.high)} for t in audit.trend],
        "outcomes": outcomes_json(audit.outcomes),
    }


def completeness_json(done: Completeness, titles: Mapping[str, str]) -> dict[str, Any]:
    """EIAS data completeness: coverage, missing data overall and per element, most undocumented."""
    return {
        "coverage": ratio_json(done.coverage), "missing": ratio_json(done.missing),
        "missing_limit": done.missing_limit, "over_limit": list(done.over_limit),
        "elements": [{"element": e, "title": titles.get(e, e), **(ratio_json(r) or {})}
                     for e, r in done.by_element.items()],
        "most_undocumented": [{"element": e, "title": titles.get(e, e), **(ratio_json(r) or {})}
                              for e, r in done.most_undocumented],
    }


def timeline_json(pathway: Pathway, episode: AuditEpisode, rows: list[ElementResultRow],
                  outcomes: Mapping[str, Any] | None, label: Label, key: Label) -> dict[str, Any]:
    """One episode element by element, in pathway order, with each occurrence's window and proof
    (evidence as `Type/<label>`: a FHIR id would re-identify)."""
    ref = resource_label(label)
    order = {el.id: i for i, el in enumerate(pathway.elements)}
    titles = {el.id: el.title for el in pathway.elements}
    ordered = sorted(rows, key=lambda r: order.get(r.element_id, len(order)))
    return {
        "patient": label(episode.patient_ref), "episode": key(episode.enrolment_id),
        "pathway": episode.pathway_id, "version": episode.pathway_version,
        "surgery_start": episode.surgery_start, "variant": episode.variant, "ward": episode.ward,
        "elements": [{"element": r.element_id, "title": titles.get(r.element_id, r.element_id),
                      "phase": r.phase, "status": r.status, "counts": r.counts, "missing": r.missing,
                      "done_at": r.done_at, "evidence": [ref(e) for e in r.evidence],
                      "decline_reason": r.decline_reason,
                      "occurrences": [{**o, "evidence": [ref(e) for e in o.get("evidence") or ()]}
                                      for o in r.occurrences or ()],
                      "evaluated_at": r.evaluated_at} for r in ordered],
        "outcomes": outcomes,
    }
