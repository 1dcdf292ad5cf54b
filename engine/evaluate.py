"""evaluate(pathway, facts, now=...): each element's status and the actions to plan. Pure."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, tzinfo

from engine.context import EvaluationContext
from engine.errors import EvaluationError
from engine.facts import PatientFacts
from engine.model import Pathway
from engine.occurrences import element_result, occurrence_windows
from engine.plan import CompiledElement, plan_of
from engine.results import OPEN_STATUSES, ElementResult, Evaluation, PlannedAction, Status


def evaluate(pathway: Pathway, facts: PatientFacts, *, now: datetime,
             tz: tzinfo = UTC, only: Collection[str] | None = None) -> Evaluation:
    """Evaluate one patient's pathway at `now` (aware); `tz` is the hospital's zone for local days.

    With `only`, just those elements (their results and actions): each element's result depends on
    the context alone, never on another element's, so a re-audit re-evaluates just the changed ones."""
    if now.tzinfo is None:
        raise EvaluationError("now must be timezone-aware")
    plan = plan_of(pathway)
    ctx = EvaluationContext(pathway, plan, facts, now, tz)
    results: list[ElementResult] = []
    actions: list[PlannedAction] = []
    upcoming: list[datetime] = []
    for compiled in plan.elements:
        if only is not None and compiled.id not in only:
            continue
        result, nxt = _element(ctx, compiled)
        results.append(result)
        upcoming.extend(nxt)
        if not result.occurrences or compiled.element.action is None:
            continue
        planned = _actions(ctx, compiled, result)
        actions.extend(planned)
        for act in planned:
            if act.status in OPEN_STATUSES:
                upcoming.extend([at for at, _ in act.escalations])
                if act.remind_at is not None:
                    upcoming.append(act.remind_at)
    later = [t for t in upcoming if t > now]
    return Evaluation(
        pathway_id=pathway.id, pathway_version=pathway.version, patient_id=facts.patient_id,
        enrolment_id=facts.enrolment_id, now=now, anchors=ctx.anchors, variables=ctx.variables,
        elements=tuple(results), actions=tuple(actions),
        next_change_at=min(later) if later else None, warnings=tuple(ctx.warnings),
        future_dated=ctx.future_dated,
        eras_items=plan.eras_items,
    )


def _element(ctx: EvaluationContext, c: CompiledElement) -> tuple[ElementResult, list[datetime]]:
    el = c.element
    if c.applies_when is not None and not ctx.truthy(c.applies_when):
        return ElementResult(el.id, el.phase, el.category, Status.NOT_APPLICABLE), []
    windows = occurrence_windows(ctx, c)
    if windows is None:
        note = f"waiting for anchor {el.window.anchor}"
        return ElementResult(el.id, el.phase, el.category, Status.UPCOMING, note=note), []
    return element_result(ctx, c, windows)


def _actions(ctx: EvaluationContext, c: CompiledElement,
             result: ElementResult) -> list[PlannedAction]:
    """One action per occurrence; a recurrence lists only started ones and the next (see
    occurrence_windows), so a series never floods the task list. Escalation and reminder
    times are only worked out for open work."""
    action = c.element.action
    if action is None:
        return []
    head = (action.kind, action.role, action.priority, c.element.title, action.instructions)
    remind = None if c.remind_before is None else c.remind_before.negated()  # once, not per occurrence
    out = []
    for occ in result.occurrences:
        escalations: tuple[tuple[datetime, str], ...] = ()
        remind_at = None
        if occ.status in OPEN_STATUSES and occ.due is not None:
            if c.escalations:
                escalations = tuple([(after.apply(occ.due, ctx.tz), role)
                                     for after, role in c.escalations])
            if remind is not None:
                remind_at = remind.apply(occ.due, ctx.tz)
        out.append(PlannedAction(occ.key, occ.element_id, occ.occurrence, *head, occ.status,
                                 occ.opens, occ.due, occ.closes, escalations, remind_at,
                                 occ.done_at, occ.decline_reason))
    return out
