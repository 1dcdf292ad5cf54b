"""Imports point down only (DESIGN.md): api > flows > fhir_adapters, store > engine; eras_cli is an edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package and the packages above it, which it must never import (not even for typing).
ABOVE = {
    "flows": {"api", "eras_cli"},
    "fhir_adapters": {"api", "eras_cli", "flows"},
    "store": {"api", "eras_cli", "flows"},
    "engine": {"api", "eras_cli", "flows", "fhir_adapters", "store"},
}


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_layer_imports_point_down(package: str) -> None:
    upward = [f"{path.relative_to(ROOT)} imports {sorted(_imported(path) & ABOVE[package])}"
              for path in sorted((ROOT / package).rglob("*.py")) if _imported(path) & ABOVE[package]]
    assert upward == []
