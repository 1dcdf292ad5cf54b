"""One status vocabulary: the action statuses and "open" are defined once (engine/results.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "store", "flows", "api", "fhir_adapters", "eras_cli")
HOME = ROOT / "engine" / "results.py"
STATUS_WORDS = {"upcoming", "due", "overdue"}


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _definitions(path: Path) -> list[str]:
    """Enums or collections in `path` that spell out the open statuses themselves."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and _strings(node) >= STATUS_WORDS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
        if isinstance(node, ast.Tuple | ast.Set | ast.List) and _strings(node) >= STATUS_WORDS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} literal")
    return found


def test_status_vocabulary_is_defined_only_in_engine_results() -> None:
    elsewhere = [d for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
                 if path != HOME for d in _definitions(path)]
    assert elsewhere == []
    assert _definitions(HOME)  # the checker does find the one real definition


def test_store_action_row_and_engine_planned_action_have_different_names() -> None:
    import store.models
    import store.types
    from engine.results import PlannedAction, Status

    assert not hasattr(store.models, "PlannedAction")
    assert store.models.PlannedActionRow.__name__ != PlannedAction.__name__
    assert not hasattr(store.types, "ActionStatus")
    assert {s.value for s in Status} >= {"upcoming", "due", "overdue", "done", "declined", "cancelled"}
