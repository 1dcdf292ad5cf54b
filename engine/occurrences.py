"""Occurrences of an element: their windows (anchored, recurring or triggered) and their statuses."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from engine.context import EvaluationContext
from engine.facts import Fact
from engine.plan import CompiledClause, CompiledElement, CompiledWindow
from engine.results import (
    DOCUMENTED_NOT_DONE,
    OPEN_STATUSES,
    Counts,
    ElementResult,
    Occurrence,
    Status,
    completed_status,
)

MAX_OCCURRENCES = 500


class Slot(NamedTuple):
    """Where one occurrence sits in time: its id, its anchor instant, and its trigger fact.

    `late_until` ends the search for late proof: a recurring occurrence's records after its
    window belong to the next occurrence (which opens then), not to it."""

    occurrence: str
    anchor: datetime
    bounds: tuple[datetime | None, datetime | None, datetime | None]
    trigger: Fact | None = None
    late_until: datetime | None = None


def occurrence_windows(ctx: EvaluationContext, c: CompiledElement) -> list[Slot] | None:
    """The element's occurrence slots, or None while its anchor is not yet known."""
    trigger = c.element.trigger
    if trigger is not None:
        lo = ctx.anchors.get(trigger.after) if trigger.after else None
        if trigger.after and lo is None:
            return []  # e.g. triggers during the stay, before admission: none yet
        hi = ctx.anchors.get(trigger.before) if trigger.before else None
        return [Slot(_trigger_id(f), f.time, _bounds(c.window, f.time, ctx), f)
                for f in ctx.index.between(trigger.concept, lo, hi)
                if f.time is not None and ctx.fact_matches(c.trigger_where, f)]
    anchor = ctx.anchors.get(c.window.anchor)
    if anchor is None:
        return None
    if c.every is None:
        return [Slot("0", anchor, _bounds(c.window, anchor, ctx))]
    until = c.until.apply(anchor, ctx.tz) if c.until is not None else None
    rec = c.element.recurrence
    stop = ctx.anchors.get(rec.stop_at) if rec is not None and rec.stop_at else None
    if stop is not None and (until is None or stop < until):
        until = stop
    limit = min(c.count or MAX_OCCURRENCES, MAX_OCCURRENCES)
    slots = []
    nxt = _shifted(c, anchor, 0, ctx)
    for i in range(limit):
        shifted, bounds = nxt
        if until is not None and (bounds[0] or shifted) >= until:
            break
        nxt = _shifted(c, anchor, i + 1, ctx)
        slots.append(Slot(str(i), shifted, bounds, None, nxt[1][0] or nxt[0]))
        if bounds[0] is not None and bounds[0] > ctx.now:
            break  # later occurrences are all upcoming: the first of them is all anyone needs
    return slots


def _shifted(c: CompiledElement, anchor: datetime, i: int,
             ctx: EvaluationContext) -> tuple[datetime, Bounds]:
    assert c.every is not None
    shifted = c.every.apply_scaled(i, anchor, ctx.tz)
    return shifted, _bounds(c.window, shifted, ctx)


def _trigger_id(fact: Fact) -> str:
    # The triggering resource's id keeps the key stable however many facts arrive later.
    return "t:" + (fact.source or (fact.time.isoformat() if fact.time else "unknown"))


Bounds = tuple[datetime | None, datetime | None, datetime | None]


def _bounds(w: CompiledWindow, anchor: datetime, ctx: EvaluationContext) -> Bounds:
    opens = w.opens.apply(anchor, ctx.tz) if w.opens else None
    closes = w.closes.apply(anchor, ctx.tz) if w.closes else None
    due = w.due.apply(anchor, ctx.tz) if w.due else closes
    return opens, due, closes


def _evidence_range(ctx: EvaluationContext, c: CompiledElement, slot: Slot,
                    clause: CompiledClause | None = None
                    ) -> tuple[datetime | None, datetime | None] | None:
    """Where proof counts: the occurrence's window, or `evidence.within` (a clause's own
    `within` for an `evidence.also` clause); None while its anchor is unknown."""
    ew = c.evidence_window if clause is None else clause.window
    if ew is None:
        return slot.bounds[0], slot.bounds[2]
    anchor = slot.anchor if ew.anchor in (c.window.anchor, "trigger") else ctx.anchors.get(ew.anchor)
    if anchor is None:
        return None
    start, _, end = _bounds(ew, anchor, ctx)
    return start, end


def _evidence(ctx: EvaluationContext, c: CompiledElement, slot: Slot, start: datetime | None,
              end: datetime | None, clause: CompiledClause | None = None) -> list[Fact]:
    """Matching facts timed in [start, end] (either bound may be open), in time order: of the
    main evidence, or of one `evidence.also` clause."""
    concepts = c.element.evidence.concepts if clause is None else clause.concepts
    where = c.evidence_where if clause is None else clause.where
    # a reassessment must come after what triggered it
    after = slot.trigger.time if slot.trigger is not None else None
    found: list[Fact] = []
    for concept in concepts:
        facts = ctx.index.between(concept, start, end)
        if after is None and where is None:
            found.extend(facts)
            continue
        for fact in facts:
            if after is not None and (fact.time <= after or fact is slot.trigger):  # type: ignore[operator]
                continue
            if where is None or ctx.fact_matches(where, fact):
                found.append(fact)
    if len(concepts) > 1:
        found.sort(key=lambda f: f.time or ctx.now)
    return found if clause is not None else ctx.proof(c.element.evidence, found)


def _documented_not_done(ctx: EvaluationContext, c: CompiledElement,
                         span: tuple[datetime | None, datetime | None]) -> Fact | None:
    """The first record, in the evidence window, that the work was not done (EIAS 'not done')."""
    if not ctx.not_done.by_concept:
        return None
    for concept in c.element.evidence.concepts:
        for fact in ctx.not_done.between(concept, *span):
            if ctx.fact_matches(c.evidence_where, fact):
                return fact
    return None


def _late(ctx: EvaluationContext, c: CompiledElement, slot: Slot, closed: datetime | None,
          clause: CompiledClause | None = None) -> list[Fact]:
    """Proof timed after the evidence window closed, before the next occurrence opens and
    before the element's phase ends (`audit.phase_ends`)."""
    if closed is None or closed >= ctx.now:
        return []
    phase_end = ctx.anchors.get(ctx.pathway.audit.phase_ends.get(c.element.phase, ""))
    until = min((t for t in (slot.late_until, phase_end) if t is not None), default=None)
    if until is not None and until <= closed:
        return []
    found = _evidence(ctx, c, slot, closed, until, clause)
    return [f for f in found if f.time is not None and f.time > closed
            and (until is None or f.time < until)]


def _also(ctx: EvaluationContext, c: CompiledElement, slot: Slot,
          late: bool) -> list[Fact] | None:
    """The facts every `evidence.also` clause needs, or None while one of them is not met.

    In the clause's window; with `late`, also after it on the same terms as late main proof
    (the occurrence is then at best done-late)."""
    found: list[Fact] = []
    for clause in c.also:
        span = _evidence_range(ctx, c, slot, clause)
        facts = [] if span is None else _evidence(ctx, c, slot, *span, clause)
        if late and span is not None:
            facts += _late(ctx, c, slot, span[1], clause)
        if len(facts) < clause.min_count:
            return None
        found.extend(facts[:clause.min_count])
    return found


def _occurrence(ctx: EvaluationContext, c: CompiledElement, slot: Slot) -> Occurrence:
    """Proof in the window, then the Task, then late proof, then the clock.

    Compliant only when done inside the window (clinical.md "Second review"): proof or a
    Task completion after it is `done-late` and counts as not done. Proof is the main
    evidence AND every `evidence.also` clause; done when the last of them is recorded."""
    el = c.element
    opens, due, closes = slot.bounds
    key = f"{ctx.facts.enrolment_id}:{el.id}:{slot.occurrence}"
    head = (key, el.id, slot.occurrence, opens, due, closes)
    span = _evidence_range(ctx, c, slot)
    proof = [] if span is None else _evidence(ctx, c, slot, *span)
    need = el.evidence.min_count
    if len(proof) >= need and (extra := _also(ctx, c, slot, late=False)) is not None:
        return _proven(ctx, head, Status.DONE, proof[:need] + extra)
    task = ctx.task(key)
    if task is not None and task.status == "completed" and el.evidence.task:
        status = completed_status(task.at, closes)
        return Occurrence(*head, status, task.at, (task.source or f"task:{key}",), None,
                          "done" if status is Status.DONE else "not-done")
    if task is not None and task.status == "cancelled" and task.reason in ctx.decline_reasons:
        declined: Counts = "not-done" if ctx.decline_reasons[task.reason] == "not-done" else None
        return Occurrence(*head, Status.DECLINED, None, (task.source or f"task:{key}",),
                          task.reason, declined)
    documented = None if span is None else _documented_not_done(ctx, c, span)
    if documented is not None:
        return Occurrence(*head, Status.DECLINED, None, (documented.source or documented.concept,),
                          DOCUMENTED_NOT_DONE, "not-done")
    late = [] if span is None else _late(ctx, c, slot, span[1])
    if len(proof) + len(late) >= need and (extra := _also(ctx, c, slot, late=True)) is not None:
        return _proven(ctx, head, Status.DONE_LATE, (proof + late)[:need] + extra)
    status = _by_time(ctx.now, opens, due, closes)
    counts: Counts = "not-done" if status is Status.OVERDUE or status is Status.MISSED else None
    return Occurrence(*head, status, None, (), None, counts)


Head = tuple[str, str, str, datetime | None, datetime | None, datetime | None]


def _proven(ctx: EvaluationContext, head: Head, status: Status, used: list[Fact]) -> Occurrence:
    """Done (or done late) at the latest of the facts used: main evidence and `also` clauses."""
    last = max(used, key=lambda f: f.time or ctx.now)
    return Occurrence(*head, status, last.time, tuple(f.source or f.concept for f in used), None,
                      "done" if status is Status.DONE else "not-done")


def _by_time(now: datetime, opens: datetime | None, due: datetime | None,
             closes: datetime | None) -> Status:
    if opens is not None and now < opens:
        return Status.UPCOMING
    if due is None or now < due:
        return Status.DUE
    if closes is None or now < closes:
        return Status.OVERDUE
    return Status.MISSED


_RANK = {Status.OVERDUE: 4, Status.MISSED: 3, Status.DONE_LATE: 2, Status.DECLINED: 1}


def element_result(ctx: EvaluationContext, c: CompiledElement,
                   slots: list[Slot]) -> tuple[ElementResult, list[datetime]]:
    """Statuses of every occurrence, the element's overall status, and its next change times.

    Overall: the worst counted occurrence (overdue, missed, done late, declined) or done when
    every counted one is done; with nothing counted yet, the first due occurrence's status.
    """
    el = c.element
    if not slots:
        status = Status.NOT_APPLICABLE if el.trigger else Status.UPCOMING
        note = "no trigger yet" if el.trigger else "no occurrence"
        return ElementResult(el.id, el.phase, el.category, status, note=note), []
    occs = tuple([_occurrence(ctx, c, slot) for slot in slots])
    changes: list[datetime] = []
    worst, rank, counted, all_done, declined = None, 0, False, True, False
    first_due = None
    for occ in occs:
        st = occ.status
        if st in OPEN_STATUSES:
            changes.extend(t for t in (occ.opens, occ.due, occ.closes) if t is not None)
            if st is Status.DUE and first_due is None:
                first_due = st
        all_done = all_done and st is Status.DONE
        declined = declined or st is Status.DECLINED
        if occ.counts is not None:
            counted = True
            r = _RANK.get(st, 0) if occ.counts == "not-done" else 0
            if r > rank:
                worst, rank = st, r
    if not counted:
        status = Status.DONE if all_done else (first_due or occs[0].status)
        return ElementResult(el.id, el.phase, el.category, status, occs, None), changes
    if worst is not None:
        return ElementResult(el.id, el.phase, el.category, worst, occs, "not-done"), changes
    status = Status.DECLINED if declined else Status.DONE
    return ElementResult(el.id, el.phase, el.category, status, occs, "done"), changes
