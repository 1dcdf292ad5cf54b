"""The audit's vocabulary for one element result: its cell, missing data, N/A declines, splits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from engine.results import ElementResult, Status

# Counted cells: done, done-late, not-done (documented: declined with a not-done reason) and
# missing (nothing documented), kept apart as EIAS does. Not counted: excluded (not yet due),
# n-a (not applicable) and n-a-declined (declined with a not-applicable reason: listed apart,
# so a ward cannot shrink its denominator unseen).
Cell = Literal["done", "done-late", "not-done", "missing", "excluded", "n-a", "n-a-declined"]
COUNTED_CELLS: frozenset[Cell] = frozenset({"done", "done-late", "not-done", "missing"})
_MISSING = frozenset({Status.MISSED, Status.OVERDUE})


def element_cell(result: ElementResult) -> Cell:
    """The element's cell in the audit (see `Cell`); a counted element takes its status."""
    if result.counts == "done":
        return "done"
    if result.counts == "not-done":
        if result.status is Status.DONE_LATE:
            return "done-late"
        return "missing" if result.status in _MISSING else "not-done"
    if result.status is Status.DECLINED:
        return "n-a-declined"
    return "n-a" if result.status is Status.NOT_APPLICABLE else "excluded"


def is_missing(result: ElementResult) -> bool:
    """Counted with neither evidence nor a documented decline (EIAS 'missing data')."""
    return result.counts == "not-done" and result.status in _MISSING


def not_applicable_declines(result: ElementResult) -> tuple[str, ...]:
    """Reasons of the occurrences declined with a reason that makes them not applicable."""
    return tuple(o.decline_reason or "" for o in result.occurrences
                 if o.status is Status.DECLINED and o.counts is None)


@dataclass(frozen=True)
class Breakdown:
    """Counted results as EIAS splits them; `counted` is their sum, compliance done/counted."""

    done: int = 0
    done_late: int = 0
    not_done: int = 0
    missing: int = 0

    @property
    def counted(self) -> int:
        return self.done + self.done_late + self.not_done + self.missing

    def __add__(self, other: Breakdown) -> Breakdown:
        return Breakdown(self.done + other.done, self.done_late + other.done_late,
                         self.not_done + other.not_done, self.missing + other.missing)

    @classmethod
    def of(cls, cells: Iterable[Cell]) -> Breakdown:
        listed = list(cells)
        return cls(listed.count("done"), listed.count("done-late"), listed.count("not-done"),
                   listed.count("missing"))


@dataclass(frozen=True)
class DeclinedNotApplicable:
    """Patients whose element was declined as not applicable, by ward and reason."""

    element_id: str
    ward: str
    reason: str
    patients: int
