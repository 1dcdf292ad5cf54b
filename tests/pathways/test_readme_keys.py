"""pathways/README.md documents every key of the pathway and terminology formats, and no other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from engine import mme, model, subsumption, terminology

README = Path(__file__).resolve().parents[2] / "pathways" / "README.md"
MODELS: list[type[BaseModel]] = [
    model.Pathway, model.Library, model.Element, model.Window, model.Recurrence, model.Trigger,
    model.Action, model.Evidence, model.Escalation, model.AnchorDef, model.Parameter, model.Score,
    model.ScoreItem, model.Source, model.Audit, model.RecordPrompt, terminology.TerminologyFile,
    terminology.Concept, terminology.ConceptOverride, terminology.Coding, terminology.UnitConversion,
    terminology.DeclineReason, model.EpisodeScope, mme.MmeTable, mme.OpioidFactors,
    subsumption.SubsumptionTable, subsumption.Hierarchy, subsumption.CodeRef,
]
KEYS = sorted({(m.__name__, name) for m in MODELS for name in m.model_fields})
# YAML keys the README writes as `key:` in its examples, e.g. `opens: "0"` or `counts_as: not-done`.
INLINE_KEY = re.compile(r"`([a-z_]+): ")


def _key_table_names(text: str) -> set[str]:
    """Backticked names in the first column of the README's `| key | meaning |` tables."""
    names: set[str] = set()
    in_table = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            in_table = False
        elif cells[0].endswith("key"):
            in_table = True
        elif in_table:
            names.update(re.findall(r"`([a-z_]+)`", cells[0]))
    return names


@pytest.mark.parametrize(("model_name", "key"), KEYS, ids=[f"{m}.{k}" for m, k in KEYS])
def test_readme_documents_model_key(model_name: str, key: str) -> None:
    assert f"`{key}`" in README.read_text(encoding="utf-8"), f"{model_name}.{key} is not in the README"


def test_readme_key_tables_and_examples_name_only_model_keys() -> None:
    text = README.read_text(encoding="utf-8")
    documented = _key_table_names(text) | set(INLINE_KEY.findall(text))
    assert len(documented) > 40  # the tables were found
    assert sorted(documented - {key for _, key in KEYS}) == []
