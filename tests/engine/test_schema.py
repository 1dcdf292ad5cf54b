"""The committed JSON Schema matches the models, and accepts the real pathway files."""

from __future__ import annotations

from pathlib import Path

from engine.schema import render

SCHEMA = Path(__file__).resolve().parents[2] / "pathways" / "schema" / "pathway.schema.json"


def test_schema_committed_matches_models() -> None:
    assert SCHEMA.read_text() == render(), "run `make schema` and commit the result"
