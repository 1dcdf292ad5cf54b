"""Every shipped pathway exports as a valid R4B Bundle: one action per element, anchors that exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from engine.loader import load_pathway
from engine.model import Pathway
from fhir_adapters.plandefinition import export_bundle, fhir_id

PATHWAY_FILES = sorted((Path(__file__).resolve().parents[2] / "pathways").glob("*.yaml"))
IDS = [p.stem for p in PATHWAY_FILES]
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@cache
def exported(file: Path) -> tuple[Pathway, dict[str, Any]]:
    pathway = load_pathway(file)
    return pathway, export_bundle(pathway)


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def plan_definition(bundle: dict[str, Any]) -> dict[str, Any]:
    (plan,) = resources(bundle, "PlanDefinition")
    return plan


def all_actions(actions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for action in actions:
        yield action
        yield from all_actions(action.get("action", []))


def element_actions(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The actions inside the phase groups, by id (anchor markers and groups left out)."""
    groups = [a for a in plan_definition(bundle)["action"] if a["id"].startswith("phase-")]
    return {a["id"]: a for group in groups for a in group["action"]}


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=IDS)
def test_export_bundle_validates_as_r4b(file: Path) -> None:
    _, bundle = exported(file)
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "collection"


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=IDS)
def test_export_bundle_has_one_action_per_element_in_its_phase_group(file: Path) -> None:
    pathway, bundle = exported(file)
    groups = {a["id"]: a for a in plan_definition(bundle)["action"] if a["id"].startswith("phase-")}
    for el in pathway.elements:
        ids = [a["id"] for a in groups[f"phase-{el.phase}"]["action"]]
        assert ids.count(fhir_id(el.id)) == 1, el.id
    assert len(element_actions(bundle)) == len(pathway.elements)


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=IDS)
def test_export_action_carries_applicability_condition_exactly_when_element_has_one(file: Path) -> None:
    pathway, bundle = exported(file)
    actions = element_actions(bundle)
    for el in pathway.elements:
        conditions = actions[fhir_id(el.id)].get("condition", [])
        expected = [] if el.applies_when is None else [{"kind": "applicability", "expression": {
            "language": "text/fhirpath", "expression": el.applies_when}}]
        assert conditions == expected, el.id


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=IDS)
def test_export_related_action_points_at_existing_anchor_action(file: Path) -> None:
    pathway, bundle = exported(file)
    top = {a["id"] for a in plan_definition(bundle)["action"]}
    assert {f"anchor-{fhir_id(name)}" for name in pathway.anchors} <= top
    for el in pathway.elements:
        related = element_actions(bundle)[fhir_id(el.id)].get("relatedAction", [])
        if el.trigger is not None:
            assert related == [], el.id  # a triggered element counts from its trigger, not an anchor
            continue
        assert [r["actionId"] for r in related] == [f"anchor-{fhir_id(el.window.anchor)}"], el.id
        assert related[0]["actionId"] in top


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=IDS)
def test_export_ids_match_fhir_id_pattern_and_are_unique(file: Path) -> None:
    _, bundle = exported(file)
    resource_ids = [e["resource"]["id"] for e in bundle["entry"]]
    action_ids = [a["id"] for a in all_actions(plan_definition(bundle)["action"])]
    bad = [i for i in resource_ids + action_ids if not FHIR_ID.match(i)]
    assert bad == []
    assert len(set(resource_ids)) == len(resource_ids)
    assert len(set(action_ids)) == len(action_ids)


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=IDS)
def test_export_activity_definition_for_each_tasked_element_is_referenced(file: Path) -> None:
    pathway, bundle = exported(file)
    urls = {r["url"] for r in resources(bundle, "ActivityDefinition")}
    actions = element_actions(bundle)
    referenced = {actions[fhir_id(el.id)]["definitionCanonical"]
                  for el in pathway.elements if el.action is not None}
    assert urls == referenced
    assert len(urls) == sum(1 for el in pathway.elements if el.action is not None)
    assert all("definitionCanonical" not in actions[fhir_id(el.id)]
               for el in pathway.elements if el.action is None)


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=IDS)
def test_export_plan_definition_is_a_clinical_protocol_with_canonical_full_urls(file: Path) -> None:
    pathway, bundle = exported(file)
    plan = plan_definition(bundle)
    assert plan["type"]["coding"][0]["code"] == "clinical-protocol"
    assert plan["version"] == str(pathway.version)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == resource["url"]
        assert resource["url"].endswith(f"/{resource['resourceType']}/{resource['id']}")
