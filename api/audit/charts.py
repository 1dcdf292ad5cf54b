"""Server-rendered SVG charts for the audit dashboard (no JS library): a p-chart of monthly
compliance, an element × month heat map with each element's overall bar, and compliance
against length of stay."""

from __future__ import annotations

from html import escape

from api.audit.series import ChartData
from api.audit.svg import (
    Scale,
    decimals_for,
    nice_domain,
    percent,
    svg_open,
    tag,
    text_lines,
    wrapped,
    x_axis,
    y_axis,
)
from engine.compliance import Ratio
from engine.p_chart import PChart, PPoint

WIDTH = 760
LINE = 13  # px per line of a wrapped label


def _ratio(r: Ratio) -> str:
    """'85% (34/40)': the percent with its numerator and denominator."""
    return "no data" if r.value is None else f"{percent(r.value)} ({r.done}/{r.counted})"


def _empty(chart_id: str, title: str, text: str) -> str:
    return svg_open(chart_id, WIDTH, 40, title) + tag("text", text, x=10, y=24) + "</svg>"


def p_chart_svg(chart: PChart, measure: str) -> str:
    """Monthly compliance with its centre line and 3-sigma limits; points outside are marked."""
    height, top, bottom, left, right = 300, 16, 236, 70, WIDTH - 110
    title = f"p-chart: compliance with {measure} by month of surgery"
    if chart.centre is None:
        return _empty("chart-p", title, "No months with data.")
    values = [v for p in chart.points for v in (p.p, p.lower, p.upper)]
    start, end, step = nice_domain(min(values), max(values), floor=0.0, ceiling=1.0)
    y = Scale(start, end, bottom, top)
    slot = (right - left) / len(chart.points)
    last = chart.points[-1]
    parts = [svg_open("chart-p", WIDTH, height, title),
             y_axis(y, step, left, right, percent, f"Compliance ({measure}, %)"),
             tag("line", class_="centre", x1=left, y1=y(chart.centre), x2=right, y2=y(chart.centre))]
    for label, value in ((f"centre {percent(chart.centre)}", chart.centre), ("upper limit", last.upper),
                         ("lower limit", last.lower)):
        parts.append(tag("text", label, class_="legend", x=right + 6, y=y(value) + 4))
    for i, p in enumerate(chart.points):
        parts.append(_month(p, y, left + i * slot, slot, bottom))
    line = " ".join(f"{left + (i + 0.5) * slot:.1f},{y(p.p):.1f}" for i, p in enumerate(chart.points))
    parts.insert(-len(chart.points), tag("polyline", class_="line", points=line))
    parts += [tag("text", f"Month of surgery (n = {measure} eligible that month)", class_="axis-title",
                  x=(left + right) / 2, y=bottom + 52, text_anchor="middle"), "</svg>"]
    return "".join(parts)


def _month(p: PPoint, y: Scale, x0: float, slot: float, bottom: float) -> str:
    """One month's limits (a short dashed step), its point, its label and n."""
    mid = x0 + slot / 2
    note = f"{p.label}: {_ratio(Ratio(p.done, p.counted))}; limits {percent(p.lower)}-{percent(p.upper)}"
    return "".join([
        *(tag("line", class_="limit", x1=x0 + 4, y1=y(v), x2=x0 + slot - 4, y2=y(v))
          for v in (p.upper, p.lower)),
        tag("text", p.label, class_="tick", x=mid, y=bottom + 16, text_anchor="middle"),
        tag("text", f"n={p.counted}", class_="tick n", x=mid, y=bottom + 30, text_anchor="middle"),
        tag("circle", tag("title", note + (" (outside)" if p.outside else "")),
            class_="point outside" if p.outside else "point", data_month=p.label, cx=mid, cy=y(p.p),
            r=6 if p.outside else 4)])


def _shade(value: float) -> tuple[str, str]:
    """Cell fill on one blue ramp (pale = low, dark = high; readable without colour vision) and
    a text colour that contrasts with it."""
    light = round(95 - 60 * value)
    return f"hsl(214 70% {light}%)", "#fff" if light < 60 else "#111"


def heat_map_svg(data: ChartData) -> str:
    """Rows: elements (full names, wrapped); columns: months, then every month together as a
    bar with n/N. Empty cells: nothing counted that month."""
    left, cell_w, gap, chars = 300, 58, 2, 46
    bar_x = left + len(data.months) * (cell_w + gap) + 12
    bar_w = WIDTH - bar_x - 96
    heights = [max(len(wrapped(e.title, chars)) * LINE + 6, 22) for e in data.elements]
    parts = [svg_open("chart-heat", WIDTH, 40 + sum(h + gap for h in heights),
                      "Compliance by element and month of surgery")]
    for j, month in enumerate(data.months):
        parts.append(tag("text", month, class_="tick", x=left + j * (cell_w + gap) + cell_w / 2, y=24,
                         text_anchor="middle"))
    parts.append(tag("text", "All months: % (n/N)", class_="tick", x=bar_x, y=24))
    row_y = 32.0
    for e, h in zip(data.elements, heights, strict=True):
        lines = wrapped(e.title, chars)
        parts.append(text_lines(lines, left - 6, row_y + (h - len(lines) * LINE) / 2 + LINE - 3, LINE))
        for j, month in enumerate(data.months):
            parts.append(_cell(e.element_id, e.title, month, data.grid.get((e.element_id, month)),
                               (left + j * (cell_w + gap), row_y, cell_w, h)))
        width = bar_w * (e.compliance.value or 0.0)
        parts += [tag("rect", tag("title", f"{escape(e.title)}: {_ratio(e.compliance)}"), class_="bar",
                      data_element=e.element_id, x=bar_x, y=row_y + h / 2 - 7, width=width, height=14),
                  tag("text", _ratio(e.compliance), class_="bar-label", x=bar_x + width + 4,
                      y=row_y + h / 2 + 4)]
        row_y += h + gap
    parts.append("</svg>")
    return "".join(parts)


def _cell(element_id: str, title: str, month: str, ratio: Ratio | None,
          box: tuple[float, float, float, float]) -> str:
    x, y, w, h = box
    where = {"data_element": element_id, "data_month": month, "x": x, "y": y, "width": w, "height": h}
    if ratio is None or ratio.value is None:
        return tag("rect", tag("title", f"{escape(title)}, {month}: no data"), class_="cell empty", **where)
    fill, ink = _shade(ratio.value)
    return (tag("rect", tag("title", f"{escape(title)}, {month}: {_ratio(ratio)}"), class_="cell", fill=fill,
                **where)
            + tag("text", percent(ratio.value), class_="cell-label", x=x + w / 2, y=y + h / 2 + 4,
                  text_anchor="middle", fill=ink))


def stay_scatter_svg(data: ChartData) -> str:
    """Each discharged patient: compliance (x) against length of stay (y), both axes scaled to
    the data with round ticks."""
    height, top, bottom, left, right = 300, 14, 250, 70, WIDTH - 20
    title = f"Compliance with {data.measure} against length of stay"
    if not data.stays:
        return _empty("chart-stay", title, "No discharged patients.")
    shares = [s.compliance.value or 0.0 for s in data.stays]
    days = [s.days for s in data.stays]
    x_start, x_end, x_step = nice_domain(min(shares), max(shares), floor=0.0, ceiling=1.0)
    y_start, y_end, y_step = nice_domain(min(days), max(days), floor=0.0)
    x, y = Scale(x_start, x_end, left, right), Scale(y_start, y_end, bottom, top)
    parts = [svg_open("chart-stay", WIDTH, height, title),
             y_axis(y, y_step, left, right, lambda d: f"{d:.{decimals_for(y_step)}f} d",
                    "Length of stay (days)"),
             x_axis(x, x_step, bottom, percent, f"Compliance with {data.measure} (%)")]
    stacked: dict[tuple[float, float], int] = {}
    for s, share in zip(data.stays, shares, strict=True):
        at = (round(x(share), 1), round(y(s.days), 1))
        stacked[at] = stacked.get(at, 0) + 1
        note = f"{escape(s.patient)}: {_ratio(s.compliance)}, {s.days:.2f} days"
        parts.append(tag("circle", tag("title", note), class_="dot", data_patient=s.patient,
                         cx=at[0], cy=at[1], r=4))
    # Patients on the same spot hide each other: say how many a dot stands for.
    parts += [tag("text", f"×{n}", class_="legend", x=cx - 6, y=cy - 8, text_anchor="end")
              for (cx, cy), n in stacked.items() if n > 1]
    parts.append("</svg>")
    return "".join(parts)
