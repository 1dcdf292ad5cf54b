"""SVG building blocks for the audit charts: linear scales with round ticks, axes, wrapped labels."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def nice_step(span: float, count: int) -> float:
    """A round tick step (1, 2, 2.5 or 5 × a power of ten) giving about `count` intervals."""
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(s * power for s in STEPS if s * power >= raw - 1e-12)


def nice_domain(low: float, high: float, count: int = 5, *, floor: float | None = None,
                ceiling: float | None = None) -> tuple[float, float, float]:
    """(start, end, step): [low, high] widened to round ticks, kept inside [floor, ceiling]; a
    single value gets a span of one step around it."""
    if high - low < 1e-9:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = nice_step(high - low, count)
    start, end = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
    if floor is not None:
        start = max(start, floor)
    if ceiling is not None:
        end = min(end, ceiling)
    return start, end, step


@dataclass(frozen=True)
class Scale:
    """Maps a data value in [start, end] to a pixel in [first, last] (last < first for y)."""

    start: float
    end: float
    first: float
    last: float

    def __call__(self, value: float) -> float:
        return self.first + (value - self.start) / (self.end - self.start) * (self.last - self.first)

    def ticks(self, step: float) -> list[float]:
        count = round((self.end - self.start) / step)
        return [round(self.start + i * step, 10) for i in range(count + 1)]


def tag(name: str, body: str | None = None, **attrs: object) -> str:
    """One SVG element; `class_` is `class`, other underscores become hyphens, floats get one
    decimal; `body` is inserted as given (escape text first)."""
    written = " ".join(f'{k.rstrip("_").replace("_", "-")}="{_attr(v)}"' for k, v in attrs.items())
    return f"<{name} {written}/>" if body is None else f"<{name} {written}>{body}</{name}>"


def _attr(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else escape(str(value))


def decimals_for(step: float) -> int:
    """Decimals that show every tick of this step distinctly (0.2 -> 1, 2.5 -> 1, 5 -> 0)."""
    places = 0
    while abs(step * 10**places - round(step * 10**places)) > 1e-9 and places < 6:
        places += 1
    return places


def percent(value: float) -> str:
    return f"{value * 100:.0f}%" if abs(value * 100 - round(value * 100)) < 1e-6 else f"{value * 100:.1f}%"


def y_axis(scale: Scale, step: float, left: float, right: float, fmt: Callable[[float], str],
           title: str) -> str:
    """Tick labels at the left, faint grid lines across, and the axis title (with its unit)."""
    middle = (scale.first + scale.last) / 2
    parts = ['<g class="axis y-axis">',
             tag("text", escape(title), class_="axis-title", x=left - 40, y=middle, text_anchor="middle",
                 transform=f"rotate(-90 {left - 40} {middle:.1f})")]
    for value in scale.ticks(step):
        y = scale(value)
        parts += [tag("line", class_="grid", x1=left, y1=y, x2=right, y2=y),
                  tag("text", fmt(value), class_="tick", x=left - 4, y=y + 4, text_anchor="end")]
    parts += [tag("line", class_="axis-line", x1=left, y1=scale.first, x2=left, y2=scale.last), "</g>"]
    return "".join(parts)


def x_axis(scale: Scale, step: float, bottom: float, fmt: Callable[[float], str], title: str) -> str:
    """Tick marks and labels under the plot, and the axis title (with its unit)."""
    parts = ['<g class="axis x-axis">',
             tag("line", class_="axis-line", x1=scale.first, y1=bottom, x2=scale.last, y2=bottom)]
    for value in scale.ticks(step):
        x = scale(value)
        parts += [tag("line", class_="tick-mark", x1=x, y1=bottom, x2=x, y2=bottom + 4),
                  tag("text", fmt(value), class_="tick", x=x, y=bottom + 16, text_anchor="middle")]
    parts += [tag("text", escape(title), class_="axis-title", x=(scale.first + scale.last) / 2, y=bottom + 34,
                  text_anchor="middle"), "</g>"]
    return "".join(parts)


def wrapped(text: str, chars: int) -> list[str]:
    """`text` in lines of at most `chars` characters, broken between words only (a single word
    longer than a line stays whole)."""
    return textwrap.wrap(text, chars, break_long_words=False, break_on_hyphens=False) or [""]


def text_lines(lines: Sequence[str], x: float, y: float, line_height: float, anchor: str = "end",
               cls: str = "label") -> str:
    """A multi-line label: one <tspan> per line."""
    spans = "".join(f'<tspan x="{x}" dy="{0 if i == 0 else line_height}">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f'<text class="{cls}" x="{x}" y="{y:.1f}" text-anchor="{anchor}">{spans}</text>'


def svg_open(chart_id: str, width: float, height: float, title: str) -> str:
    return (f'<svg id="{chart_id}" class="chart" role="img" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}"><title>{escape(title)}</title>')
