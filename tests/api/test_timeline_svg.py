"""The timeline SVG: positions against the anchors as the times say, and every text escaped.

Times are the hand-worked episode of test_patient_pathway.py (surgery 3 Nov 2025 09:00-13:00 UTC).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from api.patients.svg import timeline_svg
from api.patients.timeline import Lane, Proof, Timeline, Window
from engine.results import Status

NS = {"s": "http://www.w3.org/2000/svg"}
S = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
E = S + timedelta(hours=4)
NOW = datetime(2025, 11, 4, 8, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script> & \"co\""


def _window(status: Status, opens: datetime, closes: datetime, due: datetime | None = None,
            done: datetime | None = None) -> Window:
    return Window("0", status, opens, due, closes, done, (Proof("Observation/1", done),) if done else (),
                  None, None)


def _timeline(title: str = "Antibiotic prophylaxis") -> Timeline:
    lanes = (
        Lane("antibiotic_prophylaxis", title, "intra-op", Status.DONE,
             (_window(Status.DONE, S - timedelta(hours=1), S, done=S - timedelta(minutes=30)),)),
        Lane("tranexamic_acid", "Tranexamic acid", "intra-op", Status.DONE_LATE,
             (_window(Status.DONE_LATE, S - timedelta(minutes=30), S + timedelta(hours=1),
                      done=S + timedelta(hours=2)),)),
        Lane("urinary_catheter_removal", "Urinary catheter removed within 24 h", "post-op", Status.OVERDUE,
             (_window(Status.OVERDUE, E - timedelta(hours=12), E + timedelta(hours=24),
                      due=E + timedelta(hours=18)),)),
        Lane("drain_removal", "Wound drain removed", "post-op", Status.NOT_APPLICABLE, ()),
        Lane("rehab_milestone_week_0_2", "Rehabilitation weeks 0-2", "post-discharge", Status.UPCOMING, ()),
    )
    anchors = (("enrolment", S - timedelta(weeks=10)), ("admission", S - timedelta(hours=4)),
               ("surgery_start", S), ("surgery_end", E))
    return Timeline("TL1-enr", "lumbar_fusion", "Lumbar <fusion>", 1, "4B", anchors, lanes, NOW)


def _svg(timeline: Timeline) -> ET.Element:
    return ET.fromstring(str(timeline_svg(timeline, ZoneInfo("Europe/London"))))


def _lane(svg: ET.Element, element: str) -> ET.Element:
    found = svg.find(f".//s:g[@data-element='{element}']", NS)
    assert found is not None, element
    return found


def _bar(lane: ET.Element) -> tuple[float, float]:
    rect = lane.find("s:g/s:rect", NS)
    assert rect is not None
    return float(rect.get("x", "")), float(rect.get("x", "")) + float(rect.get("width", ""))


def _anchor_x(svg: ET.Element, name: str) -> float:
    line = svg.find(f".//s:g[@data-anchor='{name}']/s:line", NS)
    assert line is not None, name
    return float(line.get("x1", ""))


def test_svg_places_windows_and_proof_against_the_anchors() -> None:
    svg = _svg(_timeline())
    xs = [_anchor_x(svg, a) for a in ("enrolment", "admission", "surgery_start", "surgery_end", "now")]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    start, end = _bar(_lane(svg, "antibiotic_prophylaxis"))
    assert end == _anchor_x(svg, "surgery_start")  # closes at incision (= surgery start)
    assert _anchor_x(svg, "admission") < start < end  # opens 1 h before, after admission
    late = _lane(svg, "tranexamic_acid")
    proof = late.find("s:g/s:circle", NS)
    assert proof is not None
    assert _bar(late)[1] < float(proof.get("cx", "")) < _anchor_x(svg, "surgery_end")  # after the window
    catheter = _lane(svg, "urinary_catheter_removal")
    due = catheter.find("s:g/s:line", NS)
    assert due is not None
    left, right = _bar(catheter)
    assert left < _anchor_x(svg, "surgery_end") < float(due.get("x1", "")) < _anchor_x(svg, "now") < right


def test_svg_writes_each_status_as_text() -> None:
    svg = _svg(_timeline())
    lanes = svg.iterfind(".//s:g[@class='lane']", NS)
    statuses = {lane.get("data-element"): "".join(lane.itertext()) for lane in lanes}
    assert "done late" in statuses["tranexamic_acid"] and "overdue" in statuses["urinary_catheter_removal"]
    assert statuses["rehab_milestone_week_0_2"].endswith("no window yetupcoming")  # discharge not known yet
    assert "drain_removal" not in statuses  # not applicable: listed under the chart, not drawn


def test_svg_escapes_titles() -> None:
    markup = str(timeline_svg(_timeline(HOSTILE), ZoneInfo("Europe/London")))
    assert "<script" not in markup
    svg = ET.fromstring(markup)  # well-formed: every text escaped
    assert HOSTILE.split()[0] in "".join(_lane(svg, "antibiotic_prophylaxis").itertext())
    assert svg.get("aria-label") == "Lumbar <fusion>: pathway timeline"
