"""Occurrences of an element: their windows (anchored, recurring or triggered) and their statuses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.context import EvaluationContext
from engine.facts import Fact
from engine.plan import CompiledElement, CompiledWindow
from engine.results import ElementResult, Occurrence, Status

MAX_OCCURRENCES = 500


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one occurrence sits in time: its id, its anchor instant, and its trigger fact."""

    occurrence: str
    anchor: datetime
    trigger: Fact | None = None


def occurrence_windows(ctx: EvaluationContext, c: CompiledElement) -> list[Slot] | None:
    """The element's occurrence slots, or None while its anchor is not yet known."""
    if c.element.trigger is not None:
        return [Slot(_trigger_id(f), f.time, f) for f in ctx.index.get(c.element.trigger.concept)
                if f.time is not None and ctx.fact_matches(c.trigger_where, f)]
    anchor = ctx.anchors.get(c.window.anchor)
    if anchor is None:
        return None
    if c.every is None:
        return [Slot("0", anchor)]
    until = c.until.apply(anchor, ctx.tz) if c.until is not None else None
    limit = min(c.count or MAX_OCCURRENCES, MAX_OCCURRENCES)
    slots = []
    for i in range(limit):
        shifted = c.every.scaled(i).apply(anchor, ctx.tz)
        first_bound = _bounds(c.window, shifted, ctx)[0] or shifted
        if until is not None and first_bound >= until:
            break
        slots.append(Slot(str(i), shifted))
    return slots


def _trigger_id(fact: Fact) -> str:
    # The triggering resource's id keeps the key stable however many facts arrive later.
    return "t:" + (fact.source or (fact.time.isoformat() if fact.time else "unknown"))


def _bounds(w: CompiledWindow, anchor: datetime,
            ctx: EvaluationContext) -> tuple[datetime | None, datetime | None, datetime | None]:
    opens = w.opens.apply(anchor, ctx.tz) if w.opens else None
    closes = w.closes.apply(anchor, ctx.tz) if w.closes else None
    due = w.due.apply(anchor, ctx.tz) if w.due else closes
    return opens, due, closes


def _evidence(ctx: EvaluationContext, c: CompiledElement, slot: Slot, opens: datetime | None,
              closes: datetime | None) -> list[Fact]:
    start, end = opens, closes
    if c.evidence_window is not None:
        start, _, end = _bounds(c.evidence_window, slot.anchor, ctx)
    found: list[Fact] = []
    for concept in c.element.evidence.concepts:
        for fact in ctx.index.between(concept, start, end):
            if slot.trigger is not None and fact.time is not None and slot.trigger.time is not None \
                    and (fact.time <= slot.trigger.time or fact is slot.trigger):
                continue  # a reassessment must come after what triggered it
            if ctx.fact_matches(c.evidence_where, fact):
                found.append(fact)
    found.sort(key=lambda f: f.time or ctx.now)
    return found


def _occurrence(ctx: EvaluationContext, c: CompiledElement, slot: Slot) -> Occurrence:
    el = c.element
    opens, due, closes = _bounds(c.window, slot.anchor, ctx)
    key = f"{ctx.facts.enrolment_id}:{el.id}:{slot.occurrence}"
    base = dict(key=key, element_id=el.id, occurrence=slot.occurrence, opens=opens, due=due,
                closes=closes)
    proof = _evidence(ctx, c, slot, opens, closes)
    need = el.evidence.min_count
    if len(proof) >= need:
        return Occurrence(**base, status=Status.DONE, done_at=proof[need - 1].time,
                          evidence=tuple(f.source or f.concept for f in proof[:need]), counts="done")
    task = ctx.task(key)
    if task is not None and task.status == "completed" and el.evidence.task:
        return Occurrence(**base, status=Status.DONE, done_at=task.at,
                          evidence=(task.source or f"task:{key}",), counts="done")
    if task is not None and task.status == "cancelled" and task.reason in ctx.decline_reasons:
        counts = "not-done" if ctx.decline_reasons[task.reason] == "not-done" else None
        return Occurrence(**base, status=Status.DECLINED, decline_reason=task.reason,
                          evidence=(task.source or f"task:{key}",), counts=counts)
    status = _by_time(ctx.now, opens, due, closes)
    counts = "not-done" if status in (Status.OVERDUE, Status.MISSED) else None
    return Occurrence(**base, status=status, counts=counts)


def _by_time(now: datetime, opens: datetime | None, due: datetime | None,
             closes: datetime | None) -> Status:
    if opens is not None and now < opens:
        return Status.UPCOMING
    if due is None or now < due:
        return Status.DUE
    if closes is None or now < closes:
        return Status.OVERDUE
    return Status.MISSED


_SEVERITY = (Status.OVERDUE, Status.MISSED, Status.DECLINED)


def element_result(ctx: EvaluationContext, c: CompiledElement,
                   slots: list[Slot]) -> tuple[ElementResult, list[datetime]]:
    """Statuses of every occurrence, the element's overall status, and its next change times."""
    el = c.element
    occs = tuple(_occurrence(ctx, c, slot) for slot in slots)
    changes: list[datetime] = []
    for occ in occs:
        if occ.status in (Status.UPCOMING, Status.DUE, Status.OVERDUE):
            changes.extend(t for t in (occ.opens, occ.due, occ.closes) if t is not None)
    if not occs:
        kind = "no trigger yet" if el.trigger else "no occurrence"
        return ElementResult(el.id, el.phase, el.category, Status.NOT_APPLICABLE
                             if el.trigger else Status.UPCOMING, note=kind), changes
    counted = [o for o in occs if o.counts is not None]
    status: Status
    if not counted:
        status = next((o.status for o in occs if o.status is Status.DUE), occs[0].status)
        if all(o.status is Status.DONE for o in occs):
            status = Status.DONE
        counts = None
    else:
        worst = [s for s in _SEVERITY if any(o.status is s and o.counts for o in counted)]
        status = worst[0] if worst else Status.DONE
        counts = "not-done" if worst else "done"
        if not worst and any(o.status is Status.DECLINED for o in occs):
            status = Status.DECLINED
    return ElementResult(el.id, el.phase, el.category, status, occs, counts), changes
