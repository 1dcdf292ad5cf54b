"""One episode's pathway as a timeline: phases, element windows against the anchors, statuses, proof.

Built from what the store keeps (the enrolment's anchors, each element's stored result as the
engine decided it), never re-decided here. The same timeline feeds the identified patient view
and the audit's pseudonymised drill-down; `Evidence` says how proof is shown to each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.audit.pseudonyms import RESOURCE_TYPE
from engine.model import PHASES, Pathway
from engine.plan import plan_of
from engine.results import Occurrence, Status
from store.enrolments import anchor_instants
from store.models import ElementResultRow, Enrolment
from store.results import occurrence_from_json

# The worklist's and audit's words for the engine's statuses: the status itself ("done-late" ->
# "done late"), and "missed" is EIAS missing data. The meanings are the legend's.
_LABELS = {Status.MISSED: "missed (missing data)"}
STATUS_MEANINGS: dict[Status, str] = {
    Status.DONE: "proof inside its window", Status.DONE_LATE: "proof after the window closed (not compliant)",
    Status.DUE: "window open, not yet due", Status.OVERDUE: "past due, window still open",
    Status.MISSED: "window closed, nothing documented", Status.DECLINED: "not done, with a documented reason",
    Status.NOT_APPLICABLE: "does not apply to this patient", Status.UPCOMING: "window not open yet",
    Status.CANCELLED: "no longer planned",
}


def status_label(status: Status | str) -> str:
    """The short label of a status, as the worklist and the audit say it."""
    return _LABELS.get(Status(status), str(status).replace("-", " "))


# The clinical anchors drawn on the timeline, in their order of care; the enrolment is when the
# booking was seen (the episode's start).
ANCHOR_LABELS: dict[str, str] = {
    "enrolment": "booking (enrolled)", "admission": "admission", "surgery_start": "surgery start",
    "surgery_end": "surgery end", "discharge": "discharge",
}


@dataclass(frozen=True)
class Proof:
    """One piece of evidence as shown: a FHIR reference (or only its type) and the time of proof."""

    ref: str
    at: datetime | None


@dataclass(frozen=True)
class Window:
    """One occurrence: its window, status, proof or decline reason (code and display)."""

    occurrence: str
    status: Status
    opens: datetime | None
    due: datetime | None
    closes: datetime | None
    done_at: datetime | None
    proof: tuple[Proof, ...]
    decline_reason: str | None
    decline_display: str | None


@dataclass(frozen=True)
class Lane:
    element_id: str
    title: str
    phase: str
    status: Status
    windows: tuple[Window, ...]

    @property
    def drawn(self) -> bool:
        return bool(self.windows) or self.status is not Status.NOT_APPLICABLE


@dataclass(frozen=True)
class Timeline:
    """What the SVG and the JSON show for one episode (`key`: the enrolment id or a pseudonym)."""

    key: str
    pathway_id: str
    pathway_title: str
    version: int
    ward: str | None
    anchors: tuple[tuple[str, datetime], ...]
    lanes: tuple[Lane, ...]
    now: datetime

    def phases(self, *, drawn: bool = False) -> list[tuple[str, list[Lane]]]:
        """Lanes by phase, in the order of care; `drawn`: only those the chart draws."""
        lanes = [lane for lane in self.lanes if not drawn or lane.drawn]
        return [(p, [lane for lane in lanes if lane.phase == p]) for p in PHASES
                if any(lane.phase == p for lane in lanes)]

    def not_applicable(self) -> list[Lane]:
        """Elements that do not apply to this patient: listed under the chart, not drawn."""
        return [lane for lane in self.lanes if not lane.drawn]

    def span(self) -> tuple[datetime, datetime]:
        """The earliest and latest time drawn (anchors, windows, proof); now when there is nothing."""
        times = [t for _, t in self.anchors] + [
            t for lane in self.lanes for w in lane.windows for t in (w.opens, w.due, w.closes, w.done_at)
            if t is not None]
        return (min(times), max(times)) if times else (self.now, self.now)


Evidence = Callable[[str], str]


def identified(ref: str) -> str:
    """The reference as stored (a clinician's view)."""
    return ref


def resource_type_only(ref: str) -> str:
    """`Observation/123` -> `Observation`; anything else -> `record` (no id can leak)."""
    kind = ref.partition("/")[0]
    return kind if RESOURCE_TYPE.fullmatch(kind) else "record"


def _window(o: Occurrence, evidence: Evidence, reasons: Mapping[str, str]) -> Window:
    proof = tuple(dict.fromkeys(Proof(evidence(e), o.done_at) for e in o.evidence))
    reason = o.decline_reason
    return Window(o.occurrence, o.status, o.opens, o.due, o.closes, o.done_at, proof, reason,
                  None if reason is None else reasons.get(reason, reason))


def build_timeline(pathway: Pathway, enrolment: Enrolment, rows: Sequence[ElementResultRow], *,
                   key: str, now: datetime, evidence: Evidence) -> Timeline:
    """The episode's lanes in pathway order, from its stored element results and anchors."""
    order = {el.id: i for i, el in enumerate(pathway.elements)}
    titles = {el.id: el.title for el in pathway.elements}
    reasons = {code: r.display for code, r in plan_of(pathway).terminology.decline_reasons.items()}
    lanes = tuple(
        Lane(r.element_id, titles.get(r.element_id, r.element_id), r.phase, Status(r.status),
             tuple(_window(occurrence_from_json(enrolment.id, r.element_id, o), evidence, reasons)
                   for o in r.occurrences or ()))
        for r in sorted(rows, key=lambda r: order.get(r.element_id, len(order))))
    anchors = anchor_instants(enrolment)
    drawn = tuple(sorted(((name, anchors[name]) for name in ANCHOR_LABELS if name in anchors),
                         key=lambda a: a[1]))
    return Timeline(key, pathway.id, pathway.title, pathway.version, enrolment.ward, drawn, lanes, now)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def timeline_json(timeline: Timeline, *, evidence: bool) -> dict[str, Any]:
    """The timeline as the API gives it; proof and decline reasons only when asked for."""
    def window(w: Window) -> dict[str, Any]:
        body: dict[str, Any] = {"occurrence": w.occurrence, "status": w.status.value,
                                "label": status_label(w.status), "opens": _iso(w.opens),
                                "due": _iso(w.due), "closes": _iso(w.closes), "done_at": _iso(w.done_at)}
        if evidence:
            body["evidence"] = [{"resource": p.ref, "at": _iso(p.at)} for p in w.proof]
            body["decline_reason"] = w.decline_reason
            body["decline_display"] = w.decline_display
        return body

    return {
        "enrolment": timeline.key, "pathway": timeline.pathway_id, "title": timeline.pathway_title,
        "version": timeline.version, "ward": timeline.ward, "now": _iso(timeline.now),
        "anchors": [{"anchor": name, "label": ANCHOR_LABELS[name], "at": _iso(at)}
                    for name, at in timeline.anchors],
        "phases": [{"phase": phase, "elements": [
            {"element": lane.element_id, "title": lane.title, "status": lane.status.value,
             "label": status_label(lane.status), "windows": [window(w) for w in lane.windows]}
            for lane in lanes]} for phase, lanes in timeline.phases()],
    }
