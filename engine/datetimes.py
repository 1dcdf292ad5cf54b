"""FHIR date/dateTime texts as small values, compared and shifted as fhirpathpy 2.2.4 does it.

`parse` reads a text once into a `DateTimeValue`: its precision, its fields moved to UTC (the
comparison at a common precision) and its instant (the comparison at equal precision). Only
the common shapes are read here — a date, or a date with a time of day, valid calendar
fields, 1-6 fractional digits, `Z` or a `±hh:mm` zone; for any other text `parse` returns None
and the caller hands the question to fhirpathpy. Likewise `order`, `equals` and `plus` return
`FHIRPATHPY` where fhirpathpy's answer is an error or a shape this module does not build.

fhirpathpy's rules, kept exactly (tests compare the two on generated values):
- precision counts the fields given, and a `Z` zone as one more (a `+00:00` zone does not);
- values with a different number of fields (year..second) compare on their common fields,
  moved to UTC; equal there means "unknown" (empty);
- values with the same fields compare by instant; a value without a zone is local time of
  this process (Python's `datetime.timestamp()`, as fhirpathpy's dateutil parse gives);
- `+ N unit` truncates N, works on the UTC fields, and writes the result without its zone
  (or with `+00:00` when it has milliseconds or `Z`), at the input's precision.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, NamedTuple

from fhirpathpy.engine import nodes

_TEXT = re.compile(nodes.dateTimeRE)
# fhirpathpy's instant of a year or year-month value (FP_TimeBase.datetime_multipliers).
_YEAR_SECONDS, _MONTH_SECONDS = 365 * 12 * 24 * 60 * 60, 12 * 24 * 60 * 60
_UNITS = nodes.FP_Quantity._arithmetic_duration_units
_FIRST_YEAR, _LAST_YEAR = 1001, 9998  # four-digit years after any zone shift


class _Fhirpathpy:
    """The answer is fhirpathpy's to give (an error, or a shape not built here)."""


FHIRPATHPY: Final = _Fhirpathpy()


class DateTimeValue(NamedTuple):
    """One FHIR date/dateTime as fhirpathpy reads it. `utc` holds the given fields (year,
    month, day, hour, minute, second) moved to UTC; `micro` the fraction of a second."""

    text: str
    precision: int
    zoned: bool
    utc: tuple[int, ...]
    micro: int
    instant: float


def parse(text: str) -> DateTimeValue | None:
    """The value of `text`, or None when fhirpathpy must read it (not a common shape)."""
    m = _TEXT.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone, _ = m.groups()
    if not _FIRST_YEAR <= int(year) <= _LAST_YEAR:
        return None
    if day is None:  # a year or a year-month (a time needs a day: else fhirpathpy's)
        return None if hour is not None else _year_month(text, int(year), month)
    if (fraction is not None and (second is None or len(fraction) > 6)) \
            or (zone is not None and zone != "Z" and zone[4] > "5"):
        return None  # a fraction without seconds, beyond microseconds; zone minutes over 59
    try:
        local = datetime.fromisoformat(text)  # the fields the pattern found, checked
    except ValueError:
        return None  # an impossible date, hour, minute, second or offset
    utc = local if zone is None else local.astimezone(UTC)
    if not _FIRST_YEAR <= utc.year <= _LAST_YEAR:
        return None
    n = 3 + (hour is not None) + (minute is not None) + (second is not None)
    precision = n + (fraction is not None) + (zone == "Z")
    moved = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)[:n]
    return DateTimeValue(text, precision, zone is not None, moved, local.microsecond,
                         local.timestamp())


def _year_month(text: str, year: int, month: str | None) -> DateTimeValue | None:
    if month is None:
        return DateTimeValue(text, 1, False, (year,), 0, year * _YEAR_SECONDS)
    if not 1 <= int(month) <= 12:
        return None
    return DateTimeValue(text, 2, False, (year, int(month)), 0,
                         year * _YEAR_SECONDS + int(month) * _MONTH_SECONDS)


def order(a: DateTimeValue, b: DateTimeValue) -> int | None:
    """fhirpathpy's FP_TimeBase.compare: -1, 0, 1, or None (equal at the common precision)."""
    if len(a.utc) != len(b.utc):
        k = min(len(a.utc), len(b.utc))
        x, y = a.utc[:k], b.utc[:k]
        return None if x == y else (1 if x > y else -1)
    return (a.instant > b.instant) - (a.instant < b.instant)


def equals(a: DateTimeValue, b: DateTimeValue) -> bool | None:
    """fhirpathpy's FP_TimeBase.equals: True, False, or None (unknown: different precisions)."""
    if len(a.utc) == len(b.utc):
        return a.instant == b.instant
    if a.utc[0] != b.utc[0] or a.zoned != b.zoned:
        return False
    k = min(len(a.utc), len(b.utc))
    return False if a.utc[1:k] != b.utc[1:k] else None


def less(op: str, a: DateTimeValue, b: DateTimeValue) -> list[bool] | _Fhirpathpy:
    """fhirpathpy's `<`, `<=`, `>`, `>=` on two date-times, as a collection."""
    c = order(a, b)
    if c is None:
        if a.precision != b.precision:
            return []
        # equal precisions yet no order: `<`/`>` answer false, `<=`/`>=` raise in fhirpathpy
        return [False] if op in ("<", ">") else FHIRPATHPY
    if op == "<":
        return [c == -1]
    if op == ">":
        return [c == 1]
    return [c <= 0] if op == "<=" else [c >= 0]


def plus(a: DateTimeValue, amount: Decimal, unit: str | None) -> str | _Fhirpathpy:
    """fhirpathpy's `a + amount unit`: the text it returns, or FHIRPATHPY where it raises or
    writes a shape this module does not read back (a precision beyond milliseconds)."""
    name = _UNITS.get(unit) if unit is not None else None
    if name is None or a.precision > 7:
        return FHIRPATHPY
    year, month, day, hour, minute, second = (*a.utc, *(0, 1, 1, 0, 0, 0)[len(a.utc):])
    base = datetime(year, month, day, hour, minute, second, a.micro)
    try:
        result = _shift(base, a.precision, int(amount), name)
    except (OverflowError, ValueError):
        return FHIRPATHPY
    if result is None or not _FIRST_YEAR <= result.year <= _LAST_YEAR:
        return FHIRPATHPY
    return _text(result, a.precision)


def _shift(base: datetime, precision: int, value: int, unit: str) -> datetime | None:  # noqa: C901
    """FP_TimeBase.plus's table: a unit finer than the precision moves whole coarser steps,
    counted toward zero; None where fhirpathpy leaves the result undefined (it raises)."""
    def whole(x: float) -> int:
        return math.floor(x) if value >= 0 else math.ceil(x)

    if unit == "year":
        return _add_months(base, 12 * value)
    if unit == "month":
        return _add_months(base, value)
    if unit in ("day", "week"):
        days = value * 7 if unit == "week" else value
        if precision == 1:
            return _add_months(base, 12 * whole(days / 365))
        if precision == 2:
            return _add_months(base, whole(days / 30))
        return base + timedelta(days=days)
    if unit == "hour":
        if precision == 2:
            return _add_months(base, whole(value / (24 * 30)))
        if precision == 3:
            return base + timedelta(days=whole(value / 24))
        return base + timedelta(hours=value) if precision == 7 else None
    per_hour, per_minute = {"minute": (60, 1), "second": (3600, 60),
                            "millisecond": (3600 * 1000, 60 * 1000)}[unit]
    if precision == 4:
        return base + timedelta(hours=whole(value / per_hour))
    if precision == 5:
        return base + timedelta(minutes=whole(value / per_minute))
    if precision == 7:
        return base + timedelta(**{unit + "s": value})
    return None


def _add_months(base: datetime, months: int) -> datetime:
    """dateutil's relativedelta(months=...): the same day, clipped to the month's last."""
    year, month0 = divmod(base.year * 12 + base.month - 1 + months, 12)
    day = min(base.day, calendar.monthrange(year, month0 + 1)[1])
    return base.replace(year=year, month=month0 + 1, day=day)


_FORMATS = {1: "{0:04d}", 2: "{0:04d}-{1:02d}", 3: "{0:04d}-{1:02d}-{2:02d}",
            4: "{0:04d}-{1:02d}-{2:02d}T{3:02d}", 5: "{0:04d}-{1:02d}-{2:02d}T{3:02d}:{4:02d}",
            6: "{0:04d}-{1:02d}-{2:02d}T{3:02d}:{4:02d}:{5:02d}",
            7: "{0:04d}-{1:02d}-{2:02d}T{3:02d}:{4:02d}:{5:02d}.{6:03d}+00:00"}


def _text(at: datetime, precision: int) -> str:
    """FP_DateTime._extractDateByPrecision for a UTC result (milliseconds truncated)."""
    return _FORMATS[precision].format(at.year, at.month, at.day, at.hour, at.minute, at.second,
                                      at.microsecond // 1000)

