"""Load a pathway file and its includes, check it whole, and compile it; a bad file never half-loads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.checks import check_and_compile
from engine.errors import InvalidPathway, Problem
from engine.model import Element, Library, Pathway, Score
from engine.terminology import Terminology, load_terminology
from engine.validation import problems_from_validation
from engine.yamlsource import KeyPath, SourceDoc, read_yaml

PATHWAYS_DIR = Path(__file__).resolve().parent.parent / "pathways"
DEFAULT_TERMINOLOGY = PATHWAYS_DIR / "terminology" / "default.yaml"


@dataclass(frozen=True)
class Located:
    """A piece of a pathway with the file and key path it came from, for error messages."""

    doc: SourceDoc
    path: KeyPath

    def problem(self, sub: KeyPath, message: str) -> Problem:
        return self.doc.problem((*self.path, *sub), message)


@dataclass
class _Collected:
    elements: list[tuple[Element, Located]]
    scores: dict[str, tuple[Score, Located]]
    docs: list[SourceDoc]
    problems: list[Problem]


def _validate(model: type[BaseModel], doc: SourceDoc, problems: list[Problem]) -> Any:
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, doc))
        return None


def _include(into: _Collected, parent: SourceDoc, index: int, ref: str,
             stack: tuple[Path, ...]) -> None:
    target = (Path(parent.file).parent / ref).resolve()
    if target in stack:
        chain = " -> ".join(p.name for p in (*stack, target))
        into.problems.append(parent.problem(("include", index), f"include cycle: {chain}"))
        return
    if not target.is_file():
        into.problems.append(parent.problem(("include", index), f"included file not found: {ref}"))
        return
    doc = read_yaml(target, _display(target))
    into.docs.append(doc)
    library = _validate(Library, doc, into.problems)
    if library is not None:
        _collect(into, doc, library, (*stack, target))


def _collect(into: _Collected, doc: SourceDoc, part: Pathway | Library,
             stack: tuple[Path, ...]) -> None:
    for i, ref in enumerate(part.include):
        _include(into, doc, i, ref, stack)
    for name, score in part.scores.items():
        where = Located(doc, ("scores", name))
        if name in into.scores:
            first = into.scores[name][1]
            into.problems.append(where.problem((), f"duplicate score '{name}' (also in "
                                               f"{first.doc.file}:{first.doc.line_of(first.path)})"))
            continue
        into.scores[name] = (score, where)
    for i, element in enumerate(part.elements):
        into.elements.append((element, Located(doc, ("elements", i))))


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _duplicates(collected: _Collected) -> None:
    seen: dict[str, Located] = {}
    for element, where in collected.elements:
        if element.id in seen:
            first = seen[element.id]
            collected.problems.append(where.problem(("id",), (
                f"duplicate element id '{element.id}' (first defined at "
                f"{first.doc.file}:{first.doc.line_of((*first.path, 'id'))})")))
        else:
            seen[element.id] = where


def load_pathway(path: Path | str, terminology: Terminology | Path | str | None = None) -> Pathway:
    """Load, check and compile a pathway; raise InvalidPathway listing every problem found."""
    path = Path(path).resolve()
    terms = _terminology(terminology)
    doc = read_yaml(path, _display(path))
    problems: list[Problem] = []
    main = _validate(Pathway, doc, problems)
    if main is None:
        raise InvalidPathway(problems)
    collected = _Collected(elements=[], scores={}, docs=[doc], problems=problems)
    _collect(collected, doc, main, (path,))
    _duplicates(collected)
    if collected.problems:
        raise InvalidPathway(collected.problems)
    pathway = main.model_copy(update={
        "elements": tuple(e for e, _ in collected.elements),
        "scores": {name: s for name, (s, _) in collected.scores.items()},
    })
    files = {d.file: Path(d.file).read_text(encoding="utf-8") for d in collected.docs}
    digest = hashlib.sha256("\n".join(f"{k}\n{v}" for k, v in sorted(files.items())).encode())
    pathway._plan = check_and_compile(
        pathway, terms, root=Located(doc, ()),
        elements=[w for _, w in collected.elements],
        scores={name: w for name, (_, w) in collected.scores.items()},
        sha256=digest.hexdigest(), files=files,
    )
    return pathway


def _terminology(terminology: Terminology | Path | str | None) -> Terminology:
    if isinstance(terminology, Terminology):
        return terminology
    return load_terminology(terminology or DEFAULT_TERMINOLOGY)


def load_library_doc(path: Path | str) -> Library:
    """Validate a library file on its own (used by `eras pathway validate` on library files)."""
    doc = read_yaml(Path(path), _display(Path(path)))
    problems: list[Problem] = []
    library = _validate(Library, doc, problems)
    if library is None:
        raise InvalidPathway(problems)
    return library
