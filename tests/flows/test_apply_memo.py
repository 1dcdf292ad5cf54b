"""What an apply works out from the pathway alone is worked out once per pathway object: the
memo's answer equals a fresh one, and another pathway object (a changed file) is read again."""

from __future__ import annotations

from pathlib import Path

from engine.loader import load_pathway
from engine.model import Pathway
from flows import apply as apply_module
from flows.apply import _instructions

PATHWAY = Path(__file__).resolve().parents[2] / "pathways" / "lumbar_fusion.yaml"


def fresh(pathway: Pathway) -> dict[str, str]:
    return {el.id: el.action.instructions for el in pathway.elements if el.action is not None}


def with_instructions(pathway: Pathway, element_id: str, text: str) -> Pathway:
    elements = [el if el.id != element_id or el.action is None else
                el.model_copy(update={"action": el.action.model_copy(update={"instructions": text})})
                for el in pathway.elements]
    return pathway.model_copy(update={"elements": elements})


def test_the_instructions_are_gathered_once_per_pathway_and_again_for_another() -> None:
    pathway = load_pathway(PATHWAY)
    first = _instructions(pathway)
    assert _instructions(pathway) is first  # from the memo
    assert dict(first) == fresh(pathway) and len(first) > 10
    element = next(el.id for el in pathway.elements if el.action is not None)
    changed = with_instructions(pathway, element, "Walk 20 metres with the physiotherapist.")
    again = _instructions(changed)
    assert dict(again) == fresh(changed) != fresh(pathway)
    assert again[element] == "Walk 20 metres with the physiotherapist."
    assert _instructions(pathway)[element] == first[element] != again[element]


def test_the_memo_stays_small() -> None:
    pathway = load_pathway(PATHWAY)
    copies = [pathway.model_copy() for _ in range(70)]
    for copy in copies:
        assert dict(_instructions(copy)) == fresh(pathway)
    assert len(apply_module._INSTRUCTIONS) <= 64
