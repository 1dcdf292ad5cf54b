"""The timeline as server-rendered SVG: one lane per element, windows drawn against the anchors.

The time axis is piecewise linear between the anchors (booking, admission, surgery start and
end, discharge), each stretch as wide as the log of its length: a 3-hour operation and a
3-month follow-up both stay readable. Every text is escaped; colours come from patient.css,
and every status is also written as text, so the chart reads in greyscale print.
"""

from __future__ import annotations

import math
import textwrap
from datetime import datetime, timedelta, tzinfo

from markupsafe import Markup, escape

from api.patients.timeline import ANCHOR_LABELS, Lane, Timeline, Window, status_label
from store.results import SURGERY_ANCHOR

WIDTH = 1000
PLOT_LEFT, PLOT_RIGHT, STATUS_X = 300, 858, 866
HEADER, PHASE_ROW, LINE = 76, 22, 13
TITLE_CHARS = 44  # ~ what fits in the label column at 12 px
CHAR_WIDTH = 6.0  # an 11 px label's average advance, to keep anchor labels apart
SCALE_HOURS = 2.0  # the symmetric log is near linear within about this many hours of surgery start
# Ticks along the axis, from surgery start: the nonlinear scale needs them to be read.
TICKS = ((-84 * 24, "-12 w"), (-28 * 24, "-4 w"), (-7 * 24, "-1 w"), (-24, "-1 d"), (0, "0"),
         (24, "+1 d"), (72, "+3 d"), (7 * 24, "+1 w"), (28 * 24, "+4 w"), (84 * 24, "+12 w"))


class Scale:
    """Time -> x, on a symmetric log of the hours from surgery start: the operation's hours, the
    ward days and the months of follow-up each get room (a linear scale would leave the
    operation a pixel wide)."""

    def __init__(self, pivot: datetime, start: datetime, end: datetime) -> None:
        self.pivot = pivot
        self.low, high = self._f(min(start, pivot)), self._f(max(end, pivot))
        self.per_unit = (PLOT_RIGHT - PLOT_LEFT) / ((high - self.low) or 1.0)

    def _f(self, t: datetime) -> float:
        hours = (t - self.pivot).total_seconds() / 3600
        return math.copysign(math.log1p(abs(hours) / SCALE_HOURS), hours)

    def __call__(self, t: datetime) -> float:
        return round(PLOT_LEFT + (self._f(t) - self.low) * self.per_unit, 1)


def local_time(t: datetime | None, tz: tzinfo) -> str:
    """A time as the ward reads it: local day, month and hour."""
    return "–" if t is None else t.astimezone(tz).strftime("%d %b %H:%M")


def _text(x: float, y: float, body: str, cls: str, anchor: str = "start") -> str:
    return f'<text x="{x}" y="{y}" class="{cls}" text-anchor="{anchor}">{escape(body)}</text>'


Marks = tuple[list[str], list[str]]  # lines, then their labels (drawn last: no line crosses a label)


def _anchor_marks(timeline: Timeline, x_of: Scale, bottom: int, tz: tzinfo) -> Marks:
    """A line per anchor (and now), labels staggered over three rows so none overlap."""
    marks = [(name, ANCHOR_LABELS[name], at, "anchor") for name, at in timeline.anchors]
    start, end = timeline.span()
    if start <= timeline.now <= end:  # an episode long over has no "now" on it
        marks.append(("now", "now", timeline.now, "now"))
    ends = [0.0, 0.0, 0.0]
    lines, labels = [], []
    for name, label, at, cls in sorted(marks, key=lambda m: m[2]):
        x = x_of(at)
        text = f"{label} {local_time(at, tz)}"
        width = len(text) * CHAR_WIDTH
        left = min(x, WIDTH - width)
        row = next((r for r, end in enumerate(ends) if left >= end), ends.index(min(ends)))
        ends[row] = left + width + 8
        lines.append(f'<g class="{cls}" data-anchor="{escape(name)}">'
                     f'<line x1="{x}" x2="{x}" y1="{8 + row * 16}" y2="{bottom}"/></g>')
        labels.append(_text(left, 14 + row * 16, text, f"anchor-label {cls}-label"))
    return lines, labels


def _window(w: Window, lane: Lane, x_of: Scale, y: float, start: datetime, end: datetime,
            tz: tzinfo) -> str:
    x1, x2 = x_of(w.opens or start), x_of(w.closes or end)
    tip = (f"{lane.title} #{w.occurrence}: {status_label(w.status)}; window {local_time(w.opens, tz)}"
           f" to {local_time(w.closes, tz)}" + (f"; done {local_time(w.done_at, tz)}" if w.done_at else "")
           + (f"; declined: {w.decline_display}" if w.decline_display else ""))
    parts = [f'<g class="win st-{w.status.value}"><title>{escape(tip)}</title>',
             f'<rect x="{x1}" y="{y - 5}" width="{max(x2 - x1, 2.0)}" height="10" rx="2"/>']
    if w.due is not None:
        parts.append(f'<line class="due" x1="{x_of(w.due)}" x2="{x_of(w.due)}" y1="{y - 8}" y2="{y + 8}"/>')
    if w.done_at is not None:
        parts.append(f'<circle class="proof" cx="{x_of(w.done_at)}" cy="{y}" r="4.5"/>')
    return "".join(parts) + "</g>"


def _lane(lane: Lane, x_of: Scale, top: float, start: datetime, end: datetime,
          tz: tzinfo, stripe: bool) -> tuple[str, float]:
    lines = textwrap.wrap(lane.title, TITLE_CHARS) or [lane.element_id]
    height = max(26, LINE * len(lines) + 10)
    mid = top + height / 2
    title = "".join(f'<tspan x="6" y="{round(mid - LINE * (len(lines) - 1) / 2 + 4 + LINE * i, 1)}">'
                    f"{escape(line)}</tspan>" for i, line in enumerate(lines))
    body = [f'<g class="lane" data-element="{escape(lane.element_id)}" data-status="{lane.status.value}">',
            f'<rect class="row{" stripe" if stripe else ""}" x="0" y="{top}" width="{WIDTH}" '
            f'height="{height}"/>',
            f'<text class="title">{title}</text>',
            *(_window(w, lane, x_of, mid, start, end, tz) for w in lane.windows),
            "" if lane.windows else _text(PLOT_LEFT, mid + 4, "no window yet", "no-window"),
            _text(STATUS_X, mid + 4, status_label(lane.status), f"status st-{lane.status.value}"), "</g>"]
    return "".join(body), height


def _ticks(x_of: Scale, pivot: datetime, start: datetime, end: datetime, bottom: int) -> Marks:
    """Faint lines at fixed offsets from surgery start, labelled above the lanes."""
    lines, labels = [], []
    for hours, text in TICKS:
        at = pivot + timedelta(hours=hours)
        if start <= at <= end:
            x = x_of(at)
            lines.append(f'<line class="tick" x1="{x}" x2="{x}" y1="{HEADER - 8}" y2="{bottom}"/>')
            labels.append(_text(x, HEADER - 11, text, "tick-label", "middle"))
    return lines, labels


def timeline_svg(timeline: Timeline, tz: tzinfo) -> Markup:
    """The whole timeline; `tz` is the hospital's zone for the times written on it."""
    start, end = timeline.span()
    pivot = dict(timeline.anchors).get(SURGERY_ANCHOR, start)
    x_of = Scale(pivot, start, end)
    rows: list[str] = []
    y = float(HEADER)
    for phase, lanes in timeline.phases(drawn=True):
        rows.append(f'<g class="phase"><rect x="0" y="{y}" width="{WIDTH}" height="{PHASE_ROW}"/>'
                    + _text(6, y + 15, phase, "phase-label") + "</g>")
        y += PHASE_ROW
        for i, lane in enumerate(lanes):
            drawn, height = _lane(lane, x_of, y, start, end, tz, i % 2 == 1)
            rows.append(drawn)
            y += height
    height = round(y + 6)
    ticks, anchors = _ticks(x_of, pivot, start, end, height), _anchor_marks(timeline, x_of, height, tz)
    label = f"{timeline.pathway_title}: pathway timeline"
    return Markup(
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'preserveAspectRatio="xMinYMin meet">'
        + "".join(rows + ticks[0] + anchors[0] + ticks[1] + anchors[1]) + "</svg>")
