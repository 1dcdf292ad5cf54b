"""Descendants of the subsumption table's parent codes from a terminology server's ValueSet $expand."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from engine.subsumption import CodeRef, Hierarchy, SubsumptionTable
from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirError

log = logging.getLogger(__name__)


def is_a_value_set(parent: CodeRef) -> dict[str, Any]:
    """An inline ValueSet of every code below `parent` (the is-a filter, parent excluded)."""
    include = {"system": parent.system,
               "filter": [{"property": "concept", "op": "descendent-of", "value": parent.code}]}
    return {"resourceType": "ValueSet", "status": "active", "compose": {"include": [include]}}


def _expand_parameters(parent: CodeRef) -> dict[str, Any]:
    return {"resourceType": "Parameters",
            "parameter": [{"name": "valueSet", "resource": is_a_value_set(parent)}]}


def _contains(expansion: Mapping[str, Any]) -> list[CodeRef]:
    """Every code of an expansion, nested `contains` included."""
    out: list[CodeRef] = []
    stack = list((expansion.get("expansion") or {}).get("contains") or [])
    while stack:
        item = stack.pop(0)
        if item.get("system") and item.get("code") and not item.get("abstract"):
            out.append(CodeRef(system=item["system"], code=item["code"], display=item.get("display")))
        stack.extend(item.get("contains") or [])
    return out


async def expand_parents(server: FhirClient, parents: Iterable[CodeRef]) -> SubsumptionTable:
    """A table of what the server says lies below each parent.

    A parent the server cannot expand (unknown code system, 4xx, unreachable) is logged and
    keeps only the shipped children: the engine starts with what it has.
    """
    groups: list[Hierarchy] = []
    for parent in parents:
        try:
            expansion = await server.request_resource("POST", "ValueSet/$expand",
                                                      json=_expand_parameters(parent))
        except FhirError as exc:
            log.warning("terminology server could not expand %s|%s: %s",
                        parent.system, parent.code, exc)
            continue
        children = tuple(c for c in _contains(expansion) if c.key != parent.key)
        if children:
            groups.append(Hierarchy(parent=parent, children=children,
                                    source=f"ValueSet $expand at {server.base_url}"))
    return SubsumptionTable(table="terminology_server", hierarchies=tuple(groups))
