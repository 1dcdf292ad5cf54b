"""Per-evaluation context: visible facts, anchors, parameters, scores and memoised FHIRPath."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from engine.errors import EvaluationError
from engine.expressions import CompiledExpression
from engine.facts import Fact, FactIndex, PatientFacts, TaskState
from engine.model import AnchorDef, Evidence, Pathway
from engine.offsets import parse_duration
from engine.plan import Plan

_LATEST = datetime.max.replace(tzinfo=UTC)
# A condition reading only a fact's value/unit/status gives the same answer for equal values,
# so its results are shared across evaluations (a pure function of its key; bounded in size).
_VALUE_FIELDS = frozenset({"value", "unit", "status"})
_SHARED_FACT_MEMO: dict[tuple, bool] = {}
_SHARED_MEMO: dict[tuple, bool] = {}
_MEMO_LIMIT = 100_000


def age_at(birth: date | None, when: date) -> int | None:
    if birth is None:
        return None
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def episode_start(pathway: Pathway, facts: PatientFacts, tz: tzinfo,
                  now: datetime | None = None) -> datetime | None:
    """The episode's bound (EpisodeScope): the earliest known `starts` anchor minus the look-back.

    The anchors are read from every fact known at `now` (all facts when None), as they say
    where the episode begins: the enrolment, and the latest booking's date, so that a booking
    older than the enrolment (the engine started after it) still opens its own episode.
    """
    scope = pathway.episode
    if scope is None:
        return None
    # only the facts of the anchors read (the index of all of them is the caller's)
    read = {pathway.anchors[name].concept for name in scope.starts}
    facts = replace(facts, facts=tuple(f for f in facts.facts if f.concept in read))
    index = facts.visible_at(now) if now is not None else FactIndex.build(facts.facts, _LATEST)
    known = [t for t in (_anchor_at(pathway.anchors[name], facts, index) for name in scope.starts)
             if t is not None]
    return parse_duration(scope.look_back).negated().apply(min(known), tz) if known else None


def _anchor_at(anchor: AnchorDef, facts: PatientFacts, index: FactIndex) -> datetime | None:
    if anchor.builtin == "enrolment":
        return facts.enrolled_at
    times = [f.time if anchor.at == "start" else f.end for f in index.get(anchor.concept or "")]
    known = [t for t in times if t is not None]
    return (known[0] if anchor.pick == "first" else known[-1]) if known else None


class EvaluationContext:
    """What one evaluation of one patient knows; every value is computed at most once."""

    def __init__(self, pathway: Pathway, plan: Plan, facts: PatientFacts, now: datetime,
                 tz: tzinfo) -> None:
        self.pathway = pathway
        self.plan = plan
        self.facts = facts
        self.now = now
        self.tz = tz
        self.index: FactIndex = self._index(facts, now)
        self.not_done = FactIndex.build(facts.not_done, now, hold_after=now + facts.future_tolerance)
        self._vars: dict[str, Any] = {
            "sex": facts.sex,
            "age": age_at(facts.birth_date, now.astimezone(tz).date()),
            **self._parameters(),
        }
        self._memo: dict[str, bool] = {}
        self.future_dated = tuple(f.source or f.concept for f in (*self.index.held, *self.not_done.held))
        # Resource ids only, never the clinical value or its time.
        self.warnings: list[str] = [f"{source} is dated in the future: held until its time (EHR clock "
                                    "or typing error?)" for source in self.future_dated]
        self._fact_memo: dict[tuple, bool] = {}
        for score in plan.scores:
            self._vars[score.name] = sum(
                points for expr, points in score.items if self.truthy(expr))
        self.anchors = self._anchors()
        self._tasks = {t.action_key: t for t in facts.tasks}
        self.decline_reasons = {code: r.counts_as for code, r in
                                plan.terminology.decline_reasons.items()}

    def proof(self, evidence: Evidence, found: list[Fact]) -> list[Fact]:
        """The evidence facts that count: none after the `until` anchor (once it is known),
        and the first of each `distinct` value (two ondansetron doses are one intervention)."""
        limit = None if evidence.until is None else self.anchors.get(evidence.until)
        if limit is not None:
            found = [f for f in found if f.time is None or f.time <= limit]
        if evidence.distinct is None:
            return found
        seen: set[Any] = set()
        out = []
        for fact in found:
            key = fact.attrs.get(evidence.distinct, fact.concept)
            if key not in seen:
                seen.add(key)
                out.append(fact)
        return out

    def task(self, action_key: str) -> TaskState | None:
        """The Task state for an action, if it was known at `now`."""
        state = self._tasks.get(action_key)
        if state is None or (state.at is not None and state.at > self.now):
            return None
        return state

    def _index(self, facts: PatientFacts, now: datetime) -> FactIndex:
        scope = self.pathway.episode
        if scope is None:
            return facts.visible_at(now)
        return facts.visible_at(now, since=episode_start(self.pathway, facts, self.tz, now),
                                history=frozenset(scope.history))

    def _parameters(self) -> dict[str, str]:
        chosen: dict[str, str] = {}
        for name, param in self.pathway.parameters.items():
            value = self.facts.parameters.get(name)
            if value is None:
                value = param.chosen(lambda concept: bool(self.index.get(concept)))
            chosen[name] = value
        return chosen

    def _anchors(self) -> dict[str, datetime | None]:
        found: dict[str, datetime | None] = {}
        for name, anchor in self.pathway.anchors.items():
            if anchor.builtin == "enrolment":
                found[name] = self.facts.enrolled_at
                continue
            where = self.plan.anchor_where.get(name)
            items = [f for f in self.index.get(anchor.concept or "")
                     if (f.time if anchor.at == "start" else f.end) is not None
                     and self.fact_matches(where, f)]
            pick = (items[0] if anchor.pick == "first" else items[-1]) if items else None
            found[name] = None if pick is None else (pick.time if anchor.at == "start" else pick.end)
        resolved = dict(found)
        for name, anchor in self.pathway.anchors.items():
            nxt = anchor.fallback
            while resolved[name] is None and nxt is not None:
                resolved[name] = found[nxt]
                nxt = self.pathway.anchors[nxt].fallback
        return resolved

    @property
    def variables(self) -> dict[str, Any]:
        return {k: v for k, v in self._vars.items() if not isinstance(v, list)}

    def var(self, name: str) -> Any:
        if name not in self._vars:
            self._vars[name] = [f.as_fhirpath() for f in self.index.get(name)]
        return self._vars[name]

    def truthy(self, expr: CompiledExpression) -> bool:
        """An expression over the patient's variables, evaluated once per evaluation."""
        cached = self._memo.get(expr.text)
        if cached is not None:
            return cached
        env = {name: self.var(name) for name in expr.env_names}
        # With no facts to read the answer depends on scalars only: share it across patients.
        shared: tuple[Any, ...] | None = None
        scalars: list[Any] = [expr.text]
        for value in env.values():
            if isinstance(value, list) and value:
                break
            scalars.append(None if isinstance(value, list) else value)
        else:
            shared = tuple(scalars)
            cached = _SHARED_MEMO.get(shared)
            if cached is not None:
                self._memo[expr.text] = cached
                return cached
        try:
            cached = self._memo[expr.text] = expr.truthy({}, env)
        except Exception as exc:  # fhirpathpy raises bare Exception on type mismatches
            raise EvaluationError(
                f"condition '{expr.text}' cannot be evaluated on this patient's facts "
                f"({type(exc).__name__}: check the facts' value types)") from None
        if shared is not None and len(_SHARED_MEMO) < _MEMO_LIMIT:
            _SHARED_MEMO[shared] = cached
        return cached

    def fact_matches(self, expr: CompiledExpression | None, fact: Fact) -> bool:
        """An expression evaluated on one fact (evidence `where`, trigger `where`)."""
        if expr is None:
            return True
        shared = not expr.variables and expr.members <= _VALUE_FIELDS
        key: tuple = (expr.text, fact.value, fact.unit, fact.status) if shared else (
            expr.text, id(fact))
        memo = _SHARED_FACT_MEMO if shared else self._fact_memo
        cached = memo.get(key)
        if cached is None:
            env = {name: self.var(name) for name in expr.env_names}
            try:
                cached = expr.truthy(fact.as_fhirpath(), env)
            except Exception:  # fhirpathpy raises bare Exception on type mismatches
                # A fact of the wrong type (a text pain score) proves nothing; say which one.
                self.warnings.append(f"'{expr.text}' not evaluable on {fact.source or fact.concept}")
                cached = False
            if len(memo) < _MEMO_LIMIT:
                memo[key] = cached
        return cached
