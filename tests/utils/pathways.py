"""The lumbar fusion pathway, loaded once per process, and the hospital's time zone in tests.

Kept apart from the conftest files: the tests' child processes (tests/flows/processes.py) import
it, and importing a conftest would load the whole API (a second of start-up per process)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from engine.loader import load_pathway
from engine.model import Pathway

ROOT = Path(__file__).resolve().parents[2]
LONDON = ZoneInfo("Europe/London")
_pathways: dict[str, Pathway] = {}


def lumbar() -> Pathway:
    if "lumbar" not in _pathways:
        _pathways["lumbar"] = load_pathway(ROOT / "pathways" / "lumbar_fusion.yaml")
    return _pathways["lumbar"]
