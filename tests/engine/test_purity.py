"""engine/ stays pure: no I/O frameworks, no clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
ALLOWED_THIRD_PARTY = {"pydantic", "yaml", "fhirpathpy", "antlr4"}
STDLIB_IO = {"socket", "subprocess", "urllib", "http", "sqlite3", "requests", "asyncio", "time"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_imports_only_pure_packages() -> None:
    import sys

    for path in ENGINE.glob("*.py"):
        for name in _imports(path):
            if name in {"engine", "__future__"}:
                continue
            assert name not in STDLIB_IO, f"{path.name} imports {name}"
            assert name in sys.stdlib_module_names or name in ALLOWED_THIRD_PARTY, \
                f"{path.name} imports {name}"


def test_engine_never_reads_the_clock() -> None:
    for path in ENGINE.glob("*.py"):
        text = path.read_text()
        for call in ("datetime.now(", "date.today(", "datetime.utcnow(", "time.time("):
            assert call not in text, f"{path.name} calls {call}"
