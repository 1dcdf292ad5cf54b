"""Whole-pathway checks (concepts, anchors, windows, expressions) and compilation into a Plan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import InvalidPathway, Problem
from engine.expressions import FHIRPATH_BUILTINS, CompiledExpression, compile_expression
from engine.model import Element, Pathway, Window
from engine.offsets import Offset, parse_duration, parse_offset
from engine.plan import (
    BUILTIN_VARIABLES,
    CompiledClause,
    CompiledElement,
    CompiledScore,
    CompiledWindow,
    Plan,
)
from engine.terminology import Terminology
from engine.yamlsource import KeyPath

if TYPE_CHECKING:
    from engine.loader import Located


class _Checker:
    def __init__(self, pathway: Pathway, terms: Terminology) -> None:
        self.pathway = pathway
        self.terms = terms
        self.problems: list[Problem] = []
        self.variables = set(BUILTIN_VARIABLES) | set(pathway.parameters) | set(pathway.scores)

    def concept(self, where: Located, sub: KeyPath, name: str) -> None:
        if name not in self.terms.concepts:
            self.problems.append(where.problem(sub, (
                f"unknown concept '{name}': bind it in the terminology file "
                f"({self.terms.name}) or fix the name")))

    def expression(self, where: Located, sub: KeyPath, text: str | None,
                   extra: frozenset[str] = frozenset()) -> CompiledExpression | None:
        if text is None:
            return None
        try:
            compiled = compile_expression(text)
        except ValueError as exc:
            self.problems.append(where.problem(sub, str(exc)))
            return None
        for name in sorted(compiled.variables - FHIRPATH_BUILTINS - extra):
            if name in self.variables:
                continue
            if name not in self.terms.concepts:
                known = ", ".join(sorted(self.variables))
                self.problems.append(where.problem(sub, (
                    f"unknown variable %{name}: not a concept in terminology "
                    f"'{self.terms.name}', nor one of {known}")))
        return compiled

    def offset(self, where: Located, sub: KeyPath, text: str | None) -> Offset | None:
        return None if text is None else parse_offset(text)

    def window(self, where: Located, sub: KeyPath, window: Window,
               triggered: bool) -> CompiledWindow:
        anchors = set(self.pathway.anchors) | ({"trigger"} if triggered else set())
        if window.anchor not in anchors:
            hint = " ('trigger' needs a trigger on the element)" if window.anchor == "trigger" else ""
            self.problems.append(where.problem((*sub, "anchor"), (
                f"unknown anchor '{window.anchor}'{hint}; expected one of {sorted(anchors)}")))
        compiled = CompiledWindow(window.anchor, *(self.offset(where, sub, t) for t in
                                                   (window.opens, window.due, window.closes)))
        bounds = [(n, o) for n, o in (("opens", compiled.opens), ("due", compiled.due),
                                      ("closes", compiled.closes)) if o is not None]
        for (n1, o1), (n2, o2) in zip(bounds, bounds[1:], strict=False):
            if o2.approx_minutes < o1.approx_minutes:
                self.problems.append(where.problem((*sub, n2), (
                    f"window {n2} ({getattr(window, n2)}) comes before {n1} ({getattr(window, n1)})")))
        if not bounds:
            self.problems.append(where.problem(sub, "window needs at least one of opens, due, closes"))
        return compiled


def _check_anchors(c: _Checker, root: Located) -> dict[str, CompiledExpression]:
    wheres: dict[str, CompiledExpression] = {}
    for name, anchor in c.pathway.anchors.items():
        sub = ("anchors", name)
        compiled = c.expression(root, (*sub, "where"), anchor.where, _FACT_FIELDS)
        if compiled is not None:
            wheres[name] = compiled
        if (anchor.concept is None) == (anchor.builtin is None):
            c.problems.append(root.problem(sub, "an anchor needs exactly one of concept or builtin"))
        if anchor.concept is not None:
            c.concept(root, (*sub, "concept"), anchor.concept)
        seen = {name}
        nxt = anchor.fallback
        while nxt is not None:
            if nxt not in c.pathway.anchors:
                c.problems.append(root.problem((*sub, "fallback"), f"unknown anchor '{nxt}'"))
                break
            if nxt in seen:
                c.problems.append(root.problem((*sub, "fallback"), "anchor fallbacks form a cycle"))
                break
            seen.add(nxt)
            nxt = c.pathway.anchors[nxt].fallback
    return wheres


def _eras_items(c: _Checker, root: Located) -> dict[str, int]:
    """Element id -> ERAS item; each element in at most one item, every one a pathway element."""
    known = {el.id for el in c.pathway.elements}
    items: dict[str, int] = {}
    for number, item in c.pathway.audit.eras_items.items():
        for i, element_id in enumerate(item.elements):
            sub = ("audit", "eras_items", str(number), "elements", i)
            if element_id not in known:
                c.problems.append(root.problem(sub, f"unknown element '{element_id}'"))
            elif element_id in items:
                c.problems.append(root.problem(sub, (
                    f"'{element_id}' is already in ERAS item {items[element_id]}")))
            else:
                items[element_id] = number
    return items


def _check_header(c: _Checker, root: Located) -> dict[str, CompiledExpression]:
    for i, name in enumerate(c.pathway.enrols_on):
        c.concept(root, ("enrols_on", i), name)
    wheres = _check_anchors(c, root)
    if c.pathway.episode is not None:
        for i, name in enumerate(c.pathway.episode.history):
            c.concept(root, ("episode", "history", i), name)
        for i, name in enumerate(c.pathway.episode.starts):
            if name not in c.pathway.anchors:
                c.problems.append(root.problem(("episode", "starts", i), (
                    f"unknown anchor '{name}'; expected one of {sorted(c.pathway.anchors)}")))
    for name, param in c.pathway.parameters.items():
        sub = ("parameters", name)
        if name in c.terms.concepts:
            c.problems.append(root.problem(sub, f"parameter '{name}' has the name of a concept"))
        if param.default not in param.values:
            c.problems.append(root.problem((*sub, "default"), (
                f"default '{param.default}' is not one of {list(param.values)}")))
        for value, concept in param.from_concepts.items():
            if value not in param.values:
                c.problems.append(root.problem((*sub, "from_concepts", value), (
                    f"'{value}' is not one of {list(param.values)}")))
            c.concept(root, (*sub, "from_concepts", value), concept)
    return wheres


def _compile_element(c: _Checker, el: Element, where: Located) -> CompiledElement:
    if el.trigger and el.recurrence:
        c.problems.append(where.problem(("trigger",), "an element has a trigger or a recurrence, not both"))
    rec = el.recurrence
    if rec is not None and rec.count is None and rec.until is None:
        c.problems.append(where.problem(("recurrence",), "a recurrence needs count or until"))
    if rec is not None and rec.stop_at is not None and rec.stop_at not in c.pathway.anchors:
        c.problems.append(where.problem(("recurrence", "stop_at"), (
            f"unknown anchor '{rec.stop_at}'; expected one of {sorted(c.pathway.anchors)}")))
    ev = el.evidence
    if not ev.concepts and not ev.task:
        c.problems.append(where.problem(("evidence",), "evidence needs concepts, or task: true"))
    if ev.task and el.action is None:
        c.problems.append(where.problem(("evidence", "task"), "task evidence needs an action"))
    if el.escalation and el.action is None:
        c.problems.append(where.problem(("escalation",), "escalation needs an action to escalate"))
    for i, name in enumerate(ev.concepts):
        c.concept(where, ("evidence", "concepts", i), name)
    if ev.until is not None and ev.until not in c.pathway.anchors:
        c.problems.append(where.problem(("evidence", "until"), (
            f"unknown anchor '{ev.until}'; expected one of {sorted(c.pathway.anchors)}")))
    if el.trigger is not None:
        c.concept(where, ("trigger", "concept"), el.trigger.concept)
        for key in ("after", "before"):
            name = getattr(el.trigger, key)
            if name is not None and name not in c.pathway.anchors:
                c.problems.append(where.problem(("trigger", key), (
                    f"unknown anchor '{name}'; expected one of {sorted(c.pathway.anchors)}")))
    if el.action is not None and el.action.record is not None:
        c.concept(where, ("action", "record", "concept"), el.action.record.concept)
    return CompiledElement(
        element=el,
        applies_when=c.expression(where, ("applies_when",), el.applies_when),
        window=c.window(where, ("window",), el.window, el.trigger is not None),
        evidence_window=None if ev.within is None else c.window(
            where, ("evidence", "within"), ev.within, el.trigger is not None),
        evidence_where=c.expression(where, ("evidence", "where"), ev.where, _FACT_FIELDS),
        trigger_where=c.expression(where, ("trigger", "where"),
                                   el.trigger.where if el.trigger else None, _FACT_FIELDS),
        every=parse_duration(rec.every) if rec else None,
        count=rec.count if rec else None,
        until=parse_offset(rec.until) if rec and rec.until else None,
        escalations=tuple((parse_duration(e.after), e.notify) for e in el.escalation),
        remind_before=parse_duration(el.action.remind_before)
        if el.action and el.action.remind_before else None,
        also=_compile_clauses(c, el, where),
    )


_FACT_FIELDS = frozenset({"value", "unit", "status", "time", "end", "source", "concept"})


def _compile_clauses(c: _Checker, el: Element, where: Located) -> tuple[CompiledClause, ...]:
    clauses = []
    for i, clause in enumerate(el.evidence.also):
        sub = ("evidence", "also", i)
        for j, name in enumerate(clause.concepts):
            c.concept(where, (*sub, "concepts", j), name)
        clauses.append(CompiledClause(
            concepts=clause.concepts,
            where=c.expression(where, (*sub, "where"), clause.where, _FACT_FIELDS),
            window=None if clause.within is None else c.window(
                where, (*sub, "within"), clause.within, el.trigger is not None),
            min_count=clause.min_count))
    return tuple(clauses)


def check_and_compile(pathway: Pathway, terms: Terminology, *, root: Located,
                      elements: list[Located], scores: dict[str, Located],
                      sha256: str, files: dict[str, str]) -> Plan:
    """Check everything that needs the whole pathway and compile it, or raise InvalidPathway."""
    c = _Checker(pathway, terms)
    anchor_where = _check_header(c, root)
    compiled_scores = []
    # A score reads only scores defined before it: they are computed in order, once each.
    later = set(pathway.scores)
    for name, score in pathway.scores.items():
        items = []
        for i, item in enumerate(score.items):
            expr = c.expression(scores[name], ("items", i, "when"), item.when)
            if expr is not None and expr.variables & later:
                c.problems.append(scores[name].problem(("items", i, "when"), (
                    "a score can only read scores defined before it (%"
                    f"{sorted(expr.variables & later)[0]})")))
            elif expr is not None:
                items.append((expr, item.points))
        compiled_scores.append(CompiledScore(name, score, tuple(items)))
        later.discard(name)
    compiled = tuple(_compile_element(c, el, where) for el, where in zip(
        pathway.elements, elements, strict=True))
    eras_items = _eras_items(c, root)
    if c.problems:
        raise InvalidPathway(c.problems)
    return Plan(elements=compiled, scores=tuple(compiled_scores), terminology=terms,
                anchor_where=anchor_where, eras_items=eras_items,
                sha256=sha256, files=files)
