"""Export a pathway as a FHIR R4 PlanDefinition with ActivityDefinitions (CPG-on-FHIR style)."""

from __future__ import annotations

from typing import Any

from engine.model import Element, Pathway, Window
from engine.offsets import Offset, parse_offset

CANONICAL_BASE = "http://eras-engine.org/fhir"
CODE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/eras"
ROLE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/eras-role"
OFFSET_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/window-offset"
_RESOURCE_FOR_KIND = {"task": "Task", "reminder": "CommunicationRequest",
                      "patient-message": "CommunicationRequest"}


def fhir_id(name: str) -> str:
    """FHIR ids allow [A-Za-z0-9-.] only; pathway identifiers use underscores."""
    return name.replace("_", "-")


def canonical(pathway: Pathway) -> str:
    return pathway_canonical(pathway.id)


def pathway_canonical(pathway_id: str) -> str:
    """The PlanDefinition canonical URL of a pathway (without |version)."""
    return f"{CANONICAL_BASE}/PlanDefinition/{fhir_id(pathway_id)}"


def _duration(offset: Offset) -> dict[str, Any]:
    # Local-day offsets ('day 1 08:00') have no exact length; the extension keeps the text.
    return {"value": abs(offset.approx_minutes), "unit": "min",
            "system": "http://unitsofmeasure.org", "code": "min"}


def _related(window: Window) -> list[dict[str, Any]]:
    if window.anchor == "trigger":
        return []
    start = parse_offset(window.opens) if window.opens else None
    last = window.closes or window.due
    end = parse_offset(last) if last else None
    ref = start or end or Offset()
    related: dict[str, Any] = {
        "actionId": f"anchor-{fhir_id(window.anchor)}",
        "relationship": "before-start" if ref.approx_minutes < 0 else "after-start",
    }
    if start is not None and end is not None and start.approx_minutes * end.approx_minutes >= 0:
        lo, hi = sorted((abs(start.approx_minutes), abs(end.approx_minutes)))
        related["offsetRange"] = {"low": _duration(Offset(minutes=lo)),
                                  "high": _duration(Offset(minutes=hi))}
    else:
        related["offsetDuration"] = _duration(ref)
    return [related]


def _offset_extensions(window: Window) -> list[dict[str, Any]]:
    return [{"url": OFFSET_EXTENSION, "extension": [
        {"url": key, "valueString": str(getattr(window, key))}
        for key in ("anchor", "opens", "due", "closes") if getattr(window, key) is not None]}]


def _timing(element: Element) -> dict[str, Any]:
    rec = element.recurrence
    if rec is None:
        return {}
    every = parse_offset(rec.every)
    minutes = every.approx_minutes
    unit, period = ("d", minutes // 1440) if minutes % 1440 == 0 else ("h", minutes / 60)
    repeat: dict[str, Any] = {"frequency": 1, "period": period, "periodUnit": unit}
    if rec.count:
        repeat["count"] = rec.count
    return {"timingTiming": {"repeat": repeat}}


def _action(pathway: Pathway, el: Element) -> dict[str, Any]:
    action: dict[str, Any] = {
        "id": fhir_id(el.id), "title": el.title, "extension": _offset_extensions(el.window),
        "code": [{"coding": [{"system": CODE_SYSTEM, "code": el.category}]}],
        "documentation": [{"type": "citation", "display": _cite(el)}],
        "relatedAction": _related(el.window), **_timing(el),
    }
    if el.description:
        action["description"] = el.description
    if el.applies_when:
        action["condition"] = [{"kind": "applicability", "expression": {
            "language": "text/fhirpath", "expression": el.applies_when}}]
    if el.trigger is not None:
        action["trigger"] = [{"type": "data-added", "name": el.trigger.concept}]
    if el.action is not None:
        action["priority"] = el.action.priority
        action["definitionCanonical"] = _activity_url(pathway, el)
        action["participant"] = [{"type": "patient" if el.action.role == "patient"
                                  else "practitioner", "role": _role(el.action.role)}]
    if not action["relatedAction"]:
        del action["relatedAction"]
    return action


def _cite(el: Element) -> str:
    parts = [el.source.guideline, el.source.grade, el.source.evidence]
    return "; ".join(p for p in parts if p)


def _role(role: str) -> dict[str, Any]:
    return {"coding": [{"system": ROLE_SYSTEM, "code": role}], "text": role.replace("_", " ")}


def _activity_url(pathway: Pathway, el: Element) -> str:
    return f"{CANONICAL_BASE}/ActivityDefinition/{fhir_id(pathway.id)}-{fhir_id(el.id)}"


def activity_definition(pathway: Pathway, el: Element) -> dict[str, Any]:
    assert el.action is not None
    return {
        "resourceType": "ActivityDefinition", "id": fhir_id(f"{pathway.id}-{el.id}"),
        "url": _activity_url(pathway, el),
        "version": str(pathway.version), "name": el.id, "title": el.title, "status": "active",
        "kind": _RESOURCE_FOR_KIND[el.action.kind], "intent": "order",
        "priority": el.action.priority, "description": el.action.instructions,
        "code": {"coding": [{"system": CODE_SYSTEM, "code": el.id, "display": el.title}]},
        "participant": [{"type": "patient" if el.action.role == "patient" else "practitioner",
                         "role": _role(el.action.role)}],
    }


def plan_definition(pathway: Pathway) -> dict[str, Any]:
    """The pathway as a PlanDefinition: anchors as marker actions, elements grouped by phase."""
    anchors = [{"id": f"anchor-{fhir_id(name)}", "title": f"Anchor: {name}",
                "description": f"clinical time point '{name}'"} for name in pathway.anchors]
    phases: dict[str, list[dict[str, Any]]] = {}
    for el in pathway.elements:
        phases.setdefault(el.phase, []).append(_action(pathway, el))
    groups = [{"id": f"phase-{phase}", "title": phase, "groupingBehavior": "logical-group",
               "action": actions} for phase, actions in phases.items()]
    return {
        "resourceType": "PlanDefinition", "id": fhir_id(pathway.id), "url": canonical(pathway),
        "version": str(pathway.version), "name": pathway.id, "title": pathway.title,
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                             "code": "clinical-protocol"}]},
        "status": "active", "description": pathway.description or pathway.title,
        "relatedArtifact": [{"type": "citation", "display": pathway.source.guideline}],
        "action": anchors + groups,
    }


def export_bundle(pathway: Pathway) -> dict[str, Any]:
    """A collection Bundle: the PlanDefinition and one ActivityDefinition per tasked element."""
    resources = [plan_definition(pathway)] + [
        activity_definition(pathway, el) for el in pathway.elements if el.action is not None]
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": r["url"], "resource": r} for r in resources]}
