"""Time offsets of pathway windows: calendar days in the hospital's zone, exact hours and minutes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache

_DURATION = re.compile(r"^(?P<sign>[+-])?(?=\d)(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
                       r"(?:(?P<m>\d+)min)?$")
_DAY = re.compile(r"^day\s+(?P<n>-?\d+)(?:\s+(?P<hh>\d{1,2}):(?P<mm>\d{2})|\s+(?P<end>end))?$")

OFFSET_PATTERN = r"^([+-]?0|[+-]?(\d+(w|d|h|min))+|day\s+-?\d+(\s+(\d{1,2}:\d{2}|end))?)$"
OFFSET_HELP = (
    "an offset such as '-4w', '-30d', '6h', '90min', '1d12h' (w/d move the local calendar, "
    "h/min are exact), or a local day such as 'day 1', 'day 1 08:00', 'day 3 end'"
)


@dataclass(frozen=True, slots=True)
class Offset:
    """A parsed offset from an anchor: whole local days plus exact minutes, or a local day/time."""

    days: int = 0
    minutes: int = 0
    day: int | None = None
    at: time | None = None
    delta: timedelta = field(init=False, repr=False, compare=False)  # `minutes`, made once

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", timedelta(minutes=self.minutes))

    @property
    def approx_minutes(self) -> int:
        """A length for ordering checks only (a calendar day counted as 24 h)."""
        if self.day is not None:
            clock = self.at or time(0)
            return self.day * 1440 + clock.hour * 60 + clock.minute
        return self.days * 1440 + self.minutes

    def apply(self, anchor: datetime, tz: tzinfo) -> datetime:
        """The instant (in UTC) this offset names from an aware anchor, days counted in `tz`."""
        if self.day is None and not self.days:
            # Exact hours and minutes need no local calendar: the hot path of evaluation.
            utc = anchor if anchor.tzinfo is UTC else anchor.astimezone(UTC)
            return utc + self.delta if self.minutes else utc
        # Aware + timedelta is wall-clock arithmetic in Python: exactly "same time, N days
        # later" in the hospital's zone; astimezone(UTC) then resolves DST for that wall time.
        local = _local(anchor, tz)
        if self.day is not None:
            clock = self.at or time(0)
            local = local.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
            wall = local + timedelta(days=self.day)
        else:
            wall = local + timedelta(days=self.days)
        utc = wall.astimezone(UTC)
        return utc + self.delta if self.minutes else utc

    def negated(self) -> Offset:
        return Offset(days=-self.days, minutes=-self.minutes, day=self.day, at=self.at)

    def apply_scaled(self, factor: int, anchor: datetime, tz: tzinfo) -> datetime:
        """`self.scaled(factor).apply(anchor, tz)`, without building the scaled offset when
        it is exact hours and minutes (a recurrence's slots: the hot path)."""
        if self.day is None and not self.days:
            utc = anchor if anchor.tzinfo is UTC else anchor.astimezone(UTC)
            return utc + self.delta * factor if self.minutes * factor else utc
        return self.scaled(factor).apply(anchor, tz)

    def scaled(self, factor: int) -> Offset:
        """This duration repeated `factor` times (recurrence); local days are not scalable."""
        return Offset(days=self.days * factor, minutes=self.minutes * factor)


@lru_cache(maxsize=65536)
def _local(anchor: datetime, tz: tzinfo) -> datetime:
    return anchor.astimezone(tz)


def parse_offset(text: str) -> Offset:
    """Parse an offset string; raise ValueError saying what is accepted."""
    return _parsed(str(text).strip())


# Offsets are immutable and a text always parses the same: evaluations and outcomes parse the
# definitions' few texts at every apply (a ValueError is not kept: it is raised again).
@lru_cache(maxsize=4096)
def _parsed(raw: str) -> Offset:
    if raw in {"0", "+0", "-0"}:
        return Offset()
    m = _DAY.match(raw)
    if m:
        if m.group("end"):
            return Offset(day=int(m.group("n")) + 1, at=time(0))
        clock = time(0)
        if m.group("hh"):
            hh, mm = int(m.group("hh")), int(m.group("mm"))
            if hh > 23 or mm > 59:
                raise ValueError(f"'{raw}' has an impossible time of day")
            clock = time(hh, mm)
        return Offset(day=int(m.group("n")), at=clock)
    m = _DURATION.match(raw)
    if not m:
        raise ValueError(f"'{raw}' is not {OFFSET_HELP}")
    sign = -1 if m.group("sign") == "-" else 1
    days = int(m.group("w") or 0) * 7 + int(m.group("d") or 0)
    minutes = int(m.group("h") or 0) * 60 + int(m.group("m") or 0)
    return Offset(days=sign * days, minutes=sign * minutes)


def parse_duration(text: str) -> Offset:
    """Parse a positive length (recurrence, escalation); local days are rejected."""
    off = parse_offset(text)
    if off.day is not None:
        raise ValueError(f"'{text}' must be a length such as '4h' or '1d', not a local day")
    if off.approx_minutes <= 0:
        raise ValueError(f"'{text}' must be longer than zero")
    return off
