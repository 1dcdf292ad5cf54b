"""What the engine knows about one patient: clinical facts by concept, and the state of its Tasks."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

Value = str | float | int | bool | None
# Facts without a time sort first, so per-concept time lists stay ordered for bisection.
_NO_TIME = datetime.min.replace(tzinfo=UTC)
# FHIR statuses saying the event took place (an Observation `final`, a Procedure or a
# MedicationAdministration `completed`...). Such a fact dated after `now` is an EHR clock or a
# typing error, not a plan (a booking's status is `active`, `booked`...): it is held, not used.
HAPPENED = frozenset({"final", "amended", "corrected", "preliminary", "completed", "in-progress"})


@dataclass(frozen=True, slots=True)
class Fact:
    """One clinical fact: a concept, when it happened (and ended), its value, where it came from.

    `recorded` is when the record learnt it; facts recorded after `now` are invisible to an
    evaluation, so a patient's whole timeline can be replayed hour by hour.
    """

    concept: str
    time: datetime | None
    end: datetime | None = None
    value: Value = None
    unit: str | None = None
    status: str | None = None
    source: str | None = None
    recorded: datetime | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def as_fhirpath(self) -> dict[str, Any]:
        """The fact as the small JSON object conditions see (`value`, `unit`, `time`...)."""
        out: dict[str, Any] = {"concept": self.concept}
        if self.time is not None:
            out["time"] = self.time.isoformat()
        if self.end is not None:
            out["end"] = self.end.isoformat()
        for key in ("value", "unit", "status", "source"):
            val = getattr(self, key)
            if val is not None:
                out[key] = val
        out.update(self.attrs)
        return out


@dataclass(frozen=True, slots=True)
class TaskState:
    """The state of a Task the engine planned, as last read back from where Tasks are kept."""

    action_key: str
    status: str
    at: datetime | None = None
    reason: str | None = None
    by: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class PatientFacts:
    """Everything one evaluation reads. Build it once per patient; it is indexed on creation."""

    patient_id: str
    enrolment_id: str
    sex: str | None = None
    birth_date: date | None = None
    enrolled_at: datetime | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    facts: tuple[Fact, ...] = ()
    tasks: tuple[TaskState, ...] = ()
    # Records documenting that something was NOT done (e.g. Procedure.status not-done): never
    # proof, anchors or condition input; they make an occurrence "not done", not missing data.
    not_done: tuple[Fact, ...] = ()
    # How far ahead of `now` a fact that HAPPENED may be dated and still count (clock skew);
    # beyond it the fact is held until `now` reaches its time less this tolerance.
    future_tolerance: timedelta = timedelta(0)

    def visible_at(self, now: datetime, *, since: datetime | None = None,
                   history: frozenset[str] = frozenset()) -> FactIndex:
        """The facts known at `now`, indexed by concept and sorted by time.

        With `since` (the episode's bound), facts over before it are hidden unless their
        concept is a `history` one: another episode's records must not count for this one.
        """
        facts = self.facts if since is None else tuple(
            f for f in self.facts if f.concept in history or in_episode(f, since))
        return FactIndex.build(facts, now, hold_after=now + self.future_tolerance)


class FactIndex:
    """Facts by concept, each list sorted by time, hiding what was not yet known at `now`."""

    __slots__ = ("by_concept", "held", "_times")

    def __init__(self, by_concept: dict[str, list[Fact]], held: tuple[Fact, ...] = ()) -> None:
        self.by_concept = by_concept
        self.held = held  # future-dated facts (see HAPPENED) not used at this `now`
        # per concept: the facts' sort times, and whether any fact has no time (never in range)
        self._times: dict[str, tuple[list[datetime], bool]] = {}

    @classmethod
    def build(cls, facts: tuple[Fact, ...], now: datetime, *,
              hold_after: datetime | None = None) -> FactIndex:
        """The facts known at `now`; with `hold_after`, those that HAPPENED later are held."""
        by_concept: dict[str, list[Fact]] = {}
        held: list[Fact] = []
        for fact in facts:
            if hold_after is not None and future_dated(fact, hold_after):
                held.append(fact)
                continue
            seen = _as_known_at(fact, now)
            if seen is not None:
                by_concept.setdefault(fact.concept, []).append(seen)
        for items in by_concept.values():
            if len(items) > 1:
                _sort(items)
        return cls(by_concept, tuple(held))

    def get(self, concept: str) -> list[Fact]:
        return self.by_concept.get(concept, [])

    def between(self, concept: str, start: datetime | None, end: datetime | None) -> list[Fact]:
        """Facts of `concept` whose time lies in [start, end] (either bound may be open)."""
        items = self.by_concept.get(concept)
        if not items:
            return []
        known = self._times.get(concept)
        if known is None:
            known = self._times[concept] = (
                [_sort_key(f)[0] for f in items], any(f.time is None for f in items))
        times, untimed = known
        lo = 0 if start is None else bisect.bisect_left(times, start)
        hi = len(items) if end is None else bisect.bisect_right(times, end)
        if untimed:
            return [f for f in items[lo:hi] if f.time is not None]
        return items[lo:hi]


def future_dated(fact: Fact, after: datetime) -> bool:
    """A fact that says it happened, dated after `after`."""
    return fact.status in HAPPENED and fact.time is not None and fact.time > after


def in_episode(fact: Fact, since: datetime) -> bool:
    """Whether the fact belongs to an episode starting at `since` (untimed facts always do)."""
    if fact.time is None or fact.time >= since:
        return True
    # Begun before the bound but still going on (a stay, a catheter in place): it belongs.
    if fact.end is None:
        return fact.status == "in-progress"
    return fact.end >= since


def _as_known_at(fact: Fact, now: datetime) -> Fact | None:
    learnt = fact.recorded if fact.recorded is not None else fact.time
    if learnt is not None and learnt > now:
        return None
    if fact.end is not None and fact.end > now:
        # Still going on at `now`: its end is not known yet.
        return replace(fact, end=None, status="in-progress")
    return fact


def _sort(items: list[Fact]) -> None:
    """Sort in `_sort_key`'s order. Its source and value only break ties between facts at the
    same instant, so with none (the usual record) the times alone give that order; both sorts
    are stable, so facts equal on the whole key keep the order they came in either way."""
    items.sort(key=_time_key)
    previous = _time_key(items[0])
    for fact in items[1:]:
        current = _time_key(fact)
        if current == previous:
            items.sort(key=_sort_key)
            return
        previous = current


def _time_key(fact: Fact) -> datetime:
    return fact.time if fact.time is not None else _NO_TIME


def _sort_key(fact: Fact) -> tuple[datetime, str, str]:
    # A total order, so facts at the same instant read the same whatever order they came in.
    return (fact.time if fact.time is not None else _NO_TIME, fact.source or "", repr(fact.value))
