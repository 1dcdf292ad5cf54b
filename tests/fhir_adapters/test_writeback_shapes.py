"""Every shape the write builders produce is valid FHIR R4 (fhir.resources), as the apply no
longer validates each Task, CommunicationRequest, CarePlan and transaction through the R4B
models at every write (fhir_adapters.writeback.checked): here they are, for every action
element of every shipped pathway, in every status, with and without the optional parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.loader import load_pathway
from engine.results import PlannedAction, Status
from fhir_adapters.plandefinition import pathway_canonical
from fhir_adapters.writeback import (
    TASK_STATUS,
    Write,
    careplan_for,
    communication_request_for,
    local_reference,
    task_for,
    transaction_for,
    validated,
    withdraw,
)

PATHWAY_FILES = sorted((Path(__file__).resolve().parents[2] / "pathways").glob("*.yaml"))
NOW = datetime(2024, 3, 1, 8, tzinfo=UTC)
SYSTEM = "http://eras.example/task"


def _same_after_validation(resource: dict[str, Any]) -> None:
    """The old path: the R4B model accepts it and `validated` returns it unchanged."""
    assert validated(resource) is resource


def _actions(file: Path) -> list[PlannedAction]:
    pathway = load_pathway(file)
    out = []
    for el in pathway.elements:
        if el.action is None:
            continue
        for n, status in enumerate(TASK_STATUS):  # every status an evaluation plans
            timed = n % 2 == 0
            out.append(PlannedAction(
                key=f"e1:{el.id}:{n}", element_id=el.id, occurrence=str(n), kind=el.action.kind,
                role=el.action.role, priority=el.action.priority, title=el.title,
                instructions=el.action.instructions, status=status,
                opens=NOW if timed else None, due=NOW + timedelta(hours=2) if n % 3 else None,
                closes=NOW + timedelta(hours=6) if timed else None,
                decline_reason="patient-refused" if status is Status.DECLINED and timed else None,
                remind_at=NOW + timedelta(hours=1) if n % 4 == 0 else None))
    return out


@pytest.mark.parametrize("file", PATHWAY_FILES, ids=lambda f: f.stem)
def test_every_task_and_request_of_every_pathway_is_valid_r4(file: Path) -> None:
    canonical = f"{pathway_canonical(load_pathway(file).id)}|1"
    actions = _actions(file)
    assert actions
    writes: list[Write] = []
    for i, action in enumerate(actions):
        optional = i % 2 == 0
        encounter = "enc1" if optional else None
        careplan = "CarePlan/cp1" if optional else local_reference(SYSTEM, "e1")
        if action.kind == "task":
            resource = task_for(action, patient_id="p1", encounter_id=encounter, careplan_ref=careplan,
                                pathway_canonical=canonical, identifier_system=SYSTEM, now=NOW,
                                authored_on=NOW - timedelta(days=1) if optional else None)
        else:
            resource = communication_request_for(
                action, patient_id="p1", encounter_id=encounter, identifier_system=SYSTEM, now=NOW,
                careplan_ref=careplan if optional else None,
                task_ref="Task/t1" if optional else None,
                recipient="Patient/p1" if action.kind == "patient-message" else None)
        _same_after_validation(resource)
        writes.append(Write(resource, id=f"r{i}", version="3") if optional else Write(resource))
        if optional and resource["status"] in ("requested", "ready", "active"):
            withdrawn = withdraw({**resource, "id": f"r{i}"}, "no-longer-applies", "no longer applies",
                                 now=NOW)
            writes.append(Write(withdrawn, id=f"r{i}", version="4"))
    _same_after_validation(transaction_for("p1", writes))


@pytest.mark.parametrize("ended,withdrawn,refs,encounter", [
    (False, False, ["Task/t1", "urn:uuid:0b4f0cd8-4ac8-5a7a-8b8c-4e5e2a1f6b10"], "enc1"),
    (False, False, [], None),
    (True, False, ["Task/t1"], None),
    (True, True, [], "enc1"),
])
def test_every_careplan_shape_is_valid_r4(ended: bool, withdrawn: bool, refs: list[str],
                                          encounter: str | None) -> None:
    plan = careplan_for(patient_id="p1", encounter_id=encounter, enrolment_id="e1", enrolled_at=NOW,
                        pathway_canonical=f"{pathway_canonical('lumbar-fusion')}|2",
                        identifier_system=SYSTEM, task_refs=refs, title="Lumbar fusion ERAS",
                        now=NOW, ended_at=NOW + timedelta(days=3) if ended else None,
                        withdrawn="surgery cancelled" if withdrawn else None)
    _same_after_validation(plan)
    _same_after_validation(transaction_for("p1", [Write(plan), Write(plan, id="cp1", version="2")]))


def test_validation_still_rejects_a_broken_resource() -> None:
    """The check the tests above rely on can fail: a Task without its required intent."""
    task = task_for(PlannedAction(
        key="e1:x:0", element_id="x", occurrence="0", kind="task", role="nurse", priority="routine",
        title="X", instructions="Do x.", status=Status.DUE, opens=None, due=None, closes=None),
        patient_id="p1", encounter_id=None,
        careplan_ref=None, pathway_canonical=f"{pathway_canonical('lumbar-fusion')}|2",
        identifier_system=SYSTEM, now=NOW)
    del task["intent"]
    with pytest.raises(ValueError, match="not valid FHIR R4"):
        validated(task)
