"""Value objects an evaluation returns: element and occurrence statuses, and planned actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, NamedTuple


class Status(StrEnum):
    NOT_APPLICABLE = "not-applicable"
    UPCOMING = "upcoming"
    DUE = "due"
    OVERDUE = "overdue"
    DONE = "done"
    DONE_LATE = "done-late"  # proof found, but after the window closed: not compliant
    MISSED = "missed"  # the window closed with nothing documented: EIAS "missing data"
    DECLINED = "declined"
    CANCELLED = "cancelled"  # planned once, no longer planned: the stored action of a vanished plan


# The one definition of "still to do", for the engine, the store and the worklist.
OPEN_STATUSES = frozenset({Status.UPCOMING, Status.DUE, Status.OVERDUE})
# The decline reason of an occurrence the record documents as not done (e.g. a Procedure with
# status not-done; its own reason stays on that record, named in the occurrence's evidence).
DOCUMENTED_NOT_DONE = "documented-not-done"


def completed_status(at: datetime | None, closes: datetime | None) -> Status:
    """Work completed at `at`: done inside the window (closes inclusive), else done late."""
    return Status.DONE_LATE if at is not None and closes is not None and at > closes else Status.DONE
Counts = Literal["done", "not-done"] | None


# Occurrence, ElementResult and PlannedAction are NamedTuples: immutable like frozen dataclasses
# but about three times cheaper to build, and an evaluation builds hundreds of them.
class Occurrence(NamedTuple):
    """One occurrence of an element (one window) for one patient."""

    key: str
    element_id: str
    occurrence: str
    opens: datetime | None
    due: datetime | None
    closes: datetime | None
    status: Status
    done_at: datetime | None = None
    evidence: tuple[str, ...] = ()
    decline_reason: str | None = None
    counts: Counts = None


class ElementResult(NamedTuple):
    """An element's status for the patient, aggregated over its occurrences."""

    element_id: str
    phase: str
    category: str
    status: Status
    occurrences: tuple[Occurrence, ...] = ()
    counts: Counts = None
    note: str | None = None

    @property
    def occurrences_done(self) -> int:
        return sum(1 for o in self.occurrences if o.counts == "done")

    @property
    def occurrences_counted(self) -> int:
        return sum(1 for o in self.occurrences if o.counts is not None)


class PlannedAction(NamedTuple):
    """Work the adapters should carry out: one Task, reminder or patient message."""

    key: str
    element_id: str
    occurrence: str
    kind: str
    role: str
    priority: str
    title: str
    instructions: str
    status: Status
    opens: datetime | None
    due: datetime | None
    closes: datetime | None
    escalations: tuple[tuple[datetime, str], ...] = ()
    remind_at: datetime | None = None
    done_at: datetime | None = None
    decline_reason: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """The result of `evaluate`: everything decided for one patient at one instant."""

    pathway_id: str
    pathway_version: int
    patient_id: str
    enrolment_id: str
    now: datetime
    anchors: dict[str, datetime | None]
    variables: dict[str, object]
    elements: tuple[ElementResult, ...]
    actions: tuple[PlannedAction, ...]
    next_change_at: datetime | None
    warnings: tuple[str, ...] = ()
    # Facts held as dated in the future (engine.facts.HAPPENED), by source: not used at `now`.
    future_dated: tuple[str, ...] = ()
    # element id -> ERAS item number (the pathway's audit.eras_items); empty when it has none
    eras_items: Mapping[str, int] = field(default_factory=dict)

    def element(self, element_id: str) -> ElementResult:
        for result in self.elements:
            if result.element_id == element_id:
                return result
        raise KeyError(element_id)
