"""A pathway's action instructions (the text of its Tasks) are worked out once, with its plan:
the answer equals one worked out from the elements, and a changed file gives the changed text."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.loader import load_pathway
from engine.model import Pathway
from engine.plan import plan_of

PATHWAYS = Path(__file__).resolve().parents[2] / "pathways"


def fresh(pathway: Pathway) -> dict[str, str]:
    return {el.id: el.action.instructions for el in pathway.elements if el.action is not None}


def test_the_instructions_are_worked_out_once_per_plan() -> None:
    pathway = load_pathway(PATHWAYS / "lumbar_fusion.yaml")
    first = plan_of(pathway).instructions
    assert plan_of(pathway).instructions is first
    assert dict(first) == fresh(pathway) and len(first) > 10


def test_a_changed_file_gives_its_own_instructions(tmp_path: Path) -> None:
    shutil.copytree(PATHWAYS, tmp_path / "pathways")
    source = tmp_path / "pathways" / "lumbar_fusion.yaml"
    text = source.read_text()
    first_text = "instructions: >-\n"
    source.write_text(text.replace(first_text, first_text + "        Walk 20 metres first.\n", 1))
    before = load_pathway(PATHWAYS / "lumbar_fusion.yaml")
    after = load_pathway(source)
    changed = {k for k, v in plan_of(after).instructions.items() if plan_of(before).instructions[k] != v}
    assert len(changed) == 1 and plan_of(after).instructions[next(iter(changed))].startswith("Walk 20 metres")
    assert dict(plan_of(after).instructions) == fresh(after)
