"""Subsumption: parent codes and their descendants, so a concept bound to a parent binds its children."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.errors import InvalidPathway
from engine.model import Identifier, Source
from engine.validation import problems_from_validation
from engine.yamlsource import read_yaml


class CodeRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str
    code: str
    display: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.system, self.code


class Hierarchy(BaseModel):
    """One parent and its direct children (a child may be the parent of another group)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    parent: CodeRef
    children: tuple[CodeRef, ...]
    source: str | None = None


class SubsumptionTable(BaseModel):
    """A shipped (or site, or terminology-server) table of is-a relations, closed transitively."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: Identifier
    source: Source | None = None
    hierarchies: tuple[Hierarchy, ...] = ()

    def descendants(self, system: str, code: str) -> tuple[CodeRef, ...]:
        """Every code below system|code, nearest first, each once; () for a code with none."""
        found: dict[tuple[str, str], CodeRef] = {}
        frontier = [(system, code)]
        while frontier:
            key = frontier.pop(0)
            for child in self._children().get(key, ()):
                if child.key not in found and child.key != (system, code):
                    found[child.key] = child
                    frontier.append(child.key)
        return tuple(found.values())

    def parents(self) -> tuple[CodeRef, ...]:
        return tuple(dict.fromkeys(h.parent for h in self.hierarchies))

    def _children(self) -> dict[tuple[str, str], tuple[CodeRef, ...]]:
        cached: dict[tuple[str, str], tuple[CodeRef, ...]] | None = self.__dict__.get("_index")
        if cached is None:
            index: dict[tuple[str, str], list[CodeRef]] = {}
            for group in self.hierarchies:
                index.setdefault(group.parent.key, []).extend(group.children)
            cached = {key: tuple(v) for key, v in index.items()}
            self.__dict__["_index"] = cached
        return cached


def merge_tables(name: str, tables: Iterable[SubsumptionTable]) -> SubsumptionTable:
    """One table holding every hierarchy of the given ones (a site's adds to the shipped one)."""
    return SubsumptionTable(table=name, hierarchies=tuple(h for t in tables for h in t.hierarchies))


def load_subsumption(path: Path | str) -> SubsumptionTable:
    doc = read_yaml(Path(path))
    try:
        return SubsumptionTable.model_validate(doc.data)
    except ValidationError as exc:
        raise InvalidPathway(problems_from_validation(exc, doc)) from exc
