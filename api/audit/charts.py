"""Server-rendered SVG charts for the audit dashboard: bars, a trend line, a scatter (no JS library)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from engine.audit import ElementSummary, MonthTrend
from store.audit_summary import PatientSummary

WIDTH = 720
LEFT = 230
BAR = 14


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def element_bars(elements: Sequence[ElementSummary]) -> str:
    """Compliance per element, one horizontal bar each (elements with nothing counted are greyed)."""
    span = WIDTH - LEFT - 60
    height = len(elements) * (BAR + 4) + 24
    parts = [f'<svg id="chart-elements" class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}"><title>Compliance by element</title>']
    for i, e in enumerate(elements):
        y = 4 + i * (BAR + 4)
        value = e.compliance.value
        width = 0 if value is None else round(span * value)
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + BAR - 3}" text-anchor="end">{escape(e.title[:38])}</text>'
            f'<rect class="bar" data-element="{escape(e.element_id)}" x="{LEFT}" y="{y}" width="{width}" '
            f'height="{BAR}"><title>{escape(e.title)}: {e.compliance}</title></rect>'
            f'<text x="{LEFT + width + 4}" y="{y + BAR - 3}">{_pct(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def trend_line(trend: Sequence[MonthTrend]) -> str:
    """Overall compliance by month of surgery, 0-100 %."""
    height, top, bottom, left = 220, 10, 30, 40
    plot_w, plot_h = WIDTH - left - 20, height - top - bottom
    step = plot_w / max(len(trend) - 1, 1)
    points = [(left + i * step, top + plot_h * (1 - (t.compliance.value or 0))) for i, t in enumerate(trend)]
    parts = [f'<svg id="chart-trend" class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}"><title>Compliance trend by month</title>',
             f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{WIDTH - 20}" y2="{top + plot_h}"/>',
             f'<text x="4" y="{top + 8}">100%</text><text x="4" y="{top + plot_h}">0%</text>']
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="line" points="{path}"/>')
    for (x, y), t in zip(points, trend, strict=True):
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4"><title>{t.month}: '
                     f'{t.compliance} ({t.patients} patients)</title></circle>'
                     f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">{t.month}</text>')
    parts.append("</svg>")
    return "".join(parts)


def los_scatter(patients: Sequence[PatientSummary]) -> str:
    """Each discharged patient: compliance (x: over the ERAS items, as the outcome groups; all
    elements when the pathway maps none) against length of stay in days (y)."""
    height, top, bottom, left = 260, 10, 30, 40
    plot_w, plot_h = WIDTH - left - 20, height - top - bottom
    known = [(value, float(p.outcomes["length_of_stay_days"])) for p in patients
             if (value := (p.eras or p.compliance).value) is not None and p.outcomes
             and p.outcomes.get("length_of_stay_days") is not None]
    longest = max((los for _, los in known), default=1.0) or 1.0
    parts = [f'<svg id="chart-scatter" class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}"><title>Compliance against length of stay</title>',
             f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{WIDTH - 20}" y2="{top + plot_h}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
             f'<text x="{left}" y="{height - 8}">0%</text>'
             f'<text x="{WIDTH - 20}" y="{height - 8}" text-anchor="end">100% compliance</text>'
             f'<text x="4" y="{top + 8}">{longest:.1f} d</text>']
    for value, los in known:
        x, y = left + plot_w * value, top + plot_h * (1 - los / longest)
        parts.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{value:.0%}, '
                     f'{los:.2f} days</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
