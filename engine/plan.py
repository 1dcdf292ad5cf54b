"""A loaded pathway compiled for evaluation: parsed offsets and compiled FHIRPath, checked once."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def plan_of(pathway: Pathway) -> Plan:
    """The compiled plan attached by the loader; a hand-built Pathway must be loaded first."""
    plan = pathway._plan
    if not isinstance(plan, Plan):
        raise ValueError(f"pathway {pathway.id} was not built by engine.loader.load_pathway")
    return plan


def concepts_used(pathway: Pathway) -> frozenset[str]:
    """Every concept the pathway reads: enrolment, anchors, variants, conditions and evidence."""
    plan = plan_of(pathway)
    names: set[str] = set(pathway.enrols_on)
    names.update(a.concept for a in pathway.anchors.values() if a.concept)
    for param in pathway.parameters.values():
        names.update(param.from_concepts.values())
    known = plan.terminology.concepts
    for score in plan.scores:
        for expr, _ in score.items:
            names.update(v for v in expr.variables if v in known)
    for c in plan.elements:
        names.update(c.element.evidence.concepts)
        for clause in c.also:
            names.update(clause.concepts)
            if clause.where is not None:
                names.update(v for v in clause.where.variables if v in known)
        if c.element.trigger is not None:
            names.add(c.element.trigger.concept)
        if c.element.action is not None and c.element.action.record is not None:
            names.add(c.element.action.record.concept)
        for maybe in (c.applies_when, c.evidence_where, c.trigger_where):
            if maybe is not None:
                names.update(v for v in maybe.variables if v in known)
    return frozenset(names)
