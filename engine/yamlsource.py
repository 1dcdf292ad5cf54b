"""YAML reading that keeps line numbers per key path and does not turn yes/no/on/off into booleans."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import InvalidPathway, Problem

KeyPath = tuple[str | int, ...]


# libyaml's parser when PyYAML has it (the wheels do): a pathway file parses in ~5 ms instead of
# ~50 (lumbar_fusion.yaml); its nodes carry the same marks, so errors still name the line.
_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictBoolLoader(_BASE):  # type: ignore[valid-type,misc]  # a base chosen at import
    """SafeLoader where only true/false are booleans (YAML 1.2), so `on`/`no` stay strings."""


_StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictBoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class SourceDoc:
    """A parsed YAML document with the line of every key path, for error messages."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """Line of the deepest existing prefix of `path` (1-based)."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None

    def problem(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), message)


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk(node: yaml.Node, loader: _StrictBoolLoader, path: KeyPath, lines: dict) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise InvalidPathway(
                    [Problem("", key_node.start_mark.line + 1, format_path((*path, key)),
                             "duplicate key")]
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _walk(value_node, loader, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(child, loader, (*path, i), lines) for i, child in enumerate(node.value)]
    return loader.construct_object(node)


def parse_yaml(text: str, file: str) -> SourceDoc:
    """Parse one YAML document, or raise InvalidPathway naming the file and line."""
    loader = _StrictBoolLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = {} if node is None else _walk(node, loader, (), lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise InvalidPathway([Problem(file, line, "", f"not valid YAML: {exc.problem}")]) from exc
    except InvalidPathway as exc:
        raise InvalidPathway([Problem(file, p.line, p.path, p.message) for p in exc.problems]) from exc
    finally:
        loader.dispose()
    return SourceDoc(file=file, data=data, lines=lines)


def read_yaml(path: Path, display: str | None = None) -> SourceDoc:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidPathway([Problem(name, None, "", f"cannot read file: {exc.strerror}")]) from exc
    return parse_yaml(text, name)
