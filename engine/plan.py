"""A loaded pathway compiled for evaluation: parsed offsets and compiled FHIRPath, checked once."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from engine.expressions import CompiledExpression
from engine.model import Element, Pathway, Score
from engine.offsets import Offset
from engine.terminology import Terminology

BUILTIN_VARIABLES = {"sex": "the patient's administrative sex", "age": "age in whole years at now"}


@dataclass(frozen=True)
class CompiledWindow:
    anchor: str
    opens: Offset | None
    due: Offset | None
    closes: Offset | None


@dataclass(frozen=True)
class CompiledClause:
    """An evidence clause (`evidence.also`) with its condition and window compiled."""

    concepts: tuple[str, ...]
    where: CompiledExpression | None
    window: CompiledWindow | None
    min_count: int


@dataclass(frozen=True)
class CompiledElement:
    element: Element
    applies_when: CompiledExpression | None
    window: CompiledWindow
    evidence_window: CompiledWindow | None
    evidence_where: CompiledExpression | None
    trigger_where: CompiledExpression | None
    every: Offset | None
    count: int | None
    until: Offset | None
    escalations: tuple[tuple[Offset, str], ...]
    remind_before: Offset | None
    also: tuple[CompiledClause, ...] = ()

    @property
    def id(self) -> str:
        return self.element.id


@dataclass(frozen=True)
class CompiledScore:
    name: str
    score: Score
    items: tuple[tuple[CompiledExpression, int], ...]


@dataclass(frozen=True)
class Plan:
    """Everything evaluation needs that can be worked out once per pathway file."""

    elements: tuple[CompiledElement, ...]
    scores: tuple[CompiledScore, ...]
    terminology: Terminology
    sha256: str
    files: dict[str, str]
    eras_items: dict[str, int] = field(default_factory=dict)  # element id -> ERAS item
    anchor_where: dict[str, CompiledExpression] = field(default_factory=dict)
    # engine.fingerprint's digests of this plan, by zone and code: worked out once
    digests: dict[tuple[str, ...], object] = field(default_factory=dict, compare=False, repr=False)
    # concepts_read's answers, by set of elements: worked out once
    reads: dict[frozenset[str] | None, frozenset[str]] = field(default_factory=dict, compare=False,
                                                               repr=False)

    @cached_property
    def instructions(self) -> Mapping[str, str]:
        """Element id -> its action's instructions (the Tasks' text): worked out once."""
        return MappingProxyType({e.id: e.element.action.instructions for e in self.elements
                                 if e.element.action is not None})


def plan_of(pathway: Pathway) -> Plan:
    """The compiled plan attached by the loader; a hand-built Pathway must be loaded first."""
    plan = pathway._plan
    if not isinstance(plan, Plan):
        raise ValueError(f"pathway {pathway.id} was not built by engine.loader.load_pathway")
    return plan


def concepts_used(pathway: Pathway) -> frozenset[str]:
    """Every concept the pathway reads: enrolment, anchors, variants, conditions and evidence."""
    concepts, variables = _reads(pathway, None)
    known = plan_of(pathway).terminology.concepts
    return frozenset(set(pathway.enrols_on) | concepts | {v for v in variables if v in known})


def concepts_read(pathway: Pathway, elements: Collection[str] | None = None) -> frozenset[str]:
    """The concepts whose facts an evaluation of just `elements` (all when None) can read: what
    every element shares (anchors, episode scope, variants, scores) and those elements' own. A
    patient's facts of other concepts can be left out without changing the results of those
    elements, nor the anchors and variables. Holds the conditions' other variables too (a
    parameter's or a score's name): a fact of such a concept would be read as well."""
    plan = plan_of(pathway)
    key = None if elements is None else frozenset(elements)
    cached = plan.reads.get(key)
    if cached is None:
        concepts, variables = _reads(pathway, key)
        cached = plan.reads[key] = frozenset(concepts | variables)
    return cached


def _reads(pathway: Pathway, elements: frozenset[str] | None) -> tuple[set[str], set[str]]:
    """The concepts that the shared part and `elements` (all when None) read by name, and the
    variables that their FHIRPath conditions read."""
    plan = plan_of(pathway)
    concepts: set[str] = {a.concept for a in pathway.anchors.values() if a.concept}
    for param in pathway.parameters.values():
        concepts.update(param.from_concepts.values())
    expressions: list[CompiledExpression | None] = [*plan.anchor_where.values()]
    expressions.extend(expr for score in plan.scores for expr, _ in score.items)
    for c in plan.elements:
        if elements is not None and c.id not in elements:
            continue
        concepts.update(c.element.evidence.concepts)
        for clause in c.also:
            concepts.update(clause.concepts)
            expressions.append(clause.where)
        if c.element.trigger is not None:
            concepts.add(c.element.trigger.concept)
        if c.element.action is not None and c.element.action.record is not None:
            concepts.add(c.element.action.record.concept)
        expressions.extend((c.applies_when, c.evidence_where, c.trigger_where))
    return concepts, {v for expr in expressions if expr is not None for v in expr.variables}
