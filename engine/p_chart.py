"""A p-chart (Shewhart chart for proportions): centre line and per-sample 3-sigma limits.

Each sample (a month) has its own n, so its limits are p̄ ± 3·sqrt(p̄(1−p̄)/n), clipped to
[0, 1]; a point outside its limits is special-cause variation, anything inside is noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import sqrt

SIGMAS = 3


@dataclass(frozen=True)
class PPoint:
    """One sample: its label, compliant of eligible, and its control limits."""

    label: str
    done: int
    counted: int
    lower: float
    upper: float

    @property
    def p(self) -> float:
        return self.done / self.counted

    @property
    def outside(self) -> bool:
        return self.p < self.lower or self.p > self.upper


@dataclass(frozen=True)
class PChart:
    centre: float | None  # None: nothing counted in any sample
    points: tuple[PPoint, ...]

    @property
    def outside(self) -> tuple[PPoint, ...]:
        return tuple(p for p in self.points if p.outside)


def p_chart(samples: Sequence[tuple[str, int, int]]) -> PChart:
    """`samples`: (label, compliant, eligible); samples with nothing eligible are left out
    (a proportion of nothing has no place on the chart)."""
    kept = [s for s in samples if s[2] > 0]
    eligible = sum(n for _, _, n in kept)
    if not eligible:
        return PChart(None, ())
    centre = sum(d for _, d, _ in kept) / eligible
    points = []
    for label, done, n in kept:
        spread = SIGMAS * sqrt(centre * (1 - centre) / n)
        points.append(PPoint(label, done, n, max(0.0, centre - spread), min(1.0, centre + spread)))
    return PChart(centre, tuple(points))
