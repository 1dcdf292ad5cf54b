"""A FHIR Measure generated from a pathway, and MeasureReports (summary, subject-list) of an audit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from engine.audit import AuditReport, elements_in_order
from engine.audit_cells import COUNTED_CELLS
from engine.compliance import Ratio
from engine.model import Pathway
from fhir_adapters.plandefinition import CANONICAL_BASE, canonical, fhir_id

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-scoring"
OVERALL = "overall"
HIGH = "high-compliance"
ReportType = Literal["summary", "subject-list"]
_POPULATIONS = ("initial-population", "denominator", "numerator")


def measure_url(pathway: Pathway) -> str:
    return f"{CANONICAL_BASE}/Measure/{fhir_id(pathway.id)}"


def _population(code: str, description: str) -> dict[str, Any]:
    return {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]},
            "description": description,
            "criteria": {"language": "text/plain", "expression": description}}


def _group(group_id: str, description: str, unit: str, denominator: str,
           numerator: str) -> dict[str, Any]:
    return {"id": group_id, "description": description, "population": [
        _population("initial-population", f"{unit} of patients enrolled on the pathway"),
        _population("denominator", denominator),
        _population("numerator", numerator)]}


def pathway_measure(pathway: Pathway) -> dict[str, Any]:
    """A proportion Measure: one group per element (denominator = applicable and due, i.e. counted;
    numerator = done), one overall group over patient-elements, one for high-compliance patients."""
    groups = [_group(fhir_id(el.id), el.title, "Patients",
                     "Patients for whom the element applies and is due or closed (not-applicable, "
                     "not-yet-due and contraindicated declines excluded)",
                     "Patients for whom the element was done (evidence in its window or a "
                     "completed task)") for el in elements_in_order(pathway)]
    groups.append(_group(OVERALL, "All elements of all patients", "Elements",
                         "Patient-elements applicable and due or closed",
                         "Patient-elements done"))
    groups.append(_group(HIGH, f"Patients at >= {pathway.audit.high_compliance:.0%} compliance",
                         "Patients", "Patients with at least one counted element",
                         f"Patients whose compliance is >= {pathway.audit.high_compliance:.0%}"))
    return {
        "resourceType": "Measure", "id": fhir_id(pathway.id), "url": measure_url(pathway),
        "version": str(pathway.version), "name": pathway.id.title().replace("_", ""),
        "title": f"Compliance - {pathway.title}", "status": "active",
        "description": f"Compliance with the {pathway.title} pathway, element by element.",
        "relatedArtifact": [{"type": "derived-from", "resource": canonical(pathway)}],
        "scoring": {"coding": [{"system": SCORING_SYSTEM, "code": "proportion"}]},
        "improvementNotation": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
            "code": "increase"}]},
        "group": groups,
    }


def _populations(report: AuditReport) -> dict[str, dict[str, list[str]]]:
    """Patient ids per group and population; the overall group has counts only (it counts elements)."""
    everyone = [p.patient_id for p in report.patients]
    out: dict[str, dict[str, list[str]]] = {}
    for e in report.elements:
        out[fhir_id(e.element_id)] = {
            "initial-population": everyone,
            "denominator": [p.patient_id for p in report.patients
                            if p.cells.get(e.element_id) in COUNTED_CELLS],
            "numerator": [p.patient_id for p in report.patients if p.cells.get(e.element_id) == "done"]}
    scored = [p for p in report.patients if p.compliance.overall.counted]
    out[HIGH] = {"initial-population": everyone, "denominator": [p.patient_id for p in scored],
                 "numerator": [p.patient_id for p in scored
                               if p.compliance.is_high(report.high_threshold)]}
    return out


def _score(ratio: Ratio) -> dict[str, Any]:
    return {} if ratio.value is None else {"measureScore": {"value": round(ratio.value, 6)}}


def _patient_list(list_id: str, patients: list[str]) -> dict[str, Any]:
    return {"resourceType": "List", "id": list_id, "status": "current", "mode": "snapshot",
            "entry": [{"item": {"reference": f"Patient/{pid}"}} for pid in patients]}


def _report_group(group_id: str, members: dict[str, list[str]], kind: ReportType,
                  contained: list[dict[str, Any]]) -> dict[str, Any]:
    populations = []
    for code in _POPULATIONS:
        pop: dict[str, Any] = {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]},
                               "count": len(members[code])}
        if kind == "subject-list":
            list_id = f"{group_id}-{code}"
            contained.append(_patient_list(list_id, members[code]))
            pop["subjectResults"] = {"reference": f"#{list_id}"}
        populations.append(pop)
    ratio = Ratio(len(members["numerator"]), len(members["denominator"]))
    return {"id": group_id, "population": populations, **_score(ratio)}


def measure_report(pathway: Pathway, report: AuditReport, *, period_start: date,
                   period_end: date, generated: datetime,
                   kind: ReportType = "summary") -> dict[str, Any]:
    """A MeasureReport of the audit against `pathway_measure(pathway)`; `generated` is its date
    (passed in, so reports are reproducible). A subject-list report contains one List of
    patients per population."""
    members = _populations(report)
    contained: list[dict[str, Any]] = []
    groups = [_report_group(fhir_id(e.element_id), members[fhir_id(e.element_id)], kind, contained)
              for e in report.elements]
    overall = report.compliance.overall
    groups.append({"id": OVERALL, "population": [
        {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count}
        for code, count in (("initial-population", sum(len(p.cells) for p in report.patients)),
                            ("denominator", overall.counted), ("numerator", overall.done))],
        **_score(overall)})
    groups.append(_report_group(HIGH, members[HIGH], kind, contained))
    out: dict[str, Any] = {
        "resourceType": "MeasureReport", "status": "complete", "type": kind,
        "measure": f"{measure_url(pathway)}|{pathway.version}", "date": generated.isoformat(),
        "period": {"start": period_start.isoformat(), "end": period_end.isoformat()},
        "improvementNotation": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
            "code": "increase"}]},
        "group": groups,
    }
    if contained:
        out["contained"] = contained
    return out
