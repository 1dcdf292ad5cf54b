"""Turn pydantic validation errors into Problems that name file, line and key path."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from engine.errors import Problem
from engine.yamlsource import KeyPath, SourceDoc


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling against pathways/README.md)"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"got {err.get('input')!r}; expected {err['ctx']['expected']}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _clean_loc(loc: tuple) -> KeyPath:
    # pydantic adds union-branch names ("Concept", "function-after[...]") to locations
    return tuple(p for p in loc if isinstance(p, int) or not (p[:1].isupper() or "[" in p))


def problems_from_validation(exc: ValidationError, doc: SourceDoc,
                             prefix: KeyPath = ()) -> list[Problem]:
    seen: set[tuple[KeyPath, str]] = set()
    problems = []
    for err in exc.errors():
        path = (*prefix, *_clean_loc(tuple(err["loc"])))
        msg = _message(err)
        if (path, msg) in seen:
            continue
        seen.add((path, msg))
        problems.append(doc.problem(path, msg))
    return problems
