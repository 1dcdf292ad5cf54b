"""The fast path's own date-times give fhirpathpy's answers on generated texts.

Texts of every shape FHIR and fhirpathpy's pattern allow (partial dates, hours alone, fractions
of 1-9 digits, `Z`, `±hh:mm`, no zone, impossible fields), compared, and shifted by every
time unit, both ways: the fast path's steps against the fhirpathpy functions the slow path
calls, in several process time zones (a value without a zone is local time in fhirpathpy).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from fhirpathpy.engine import nodes, util
from fhirpathpy.engine.invocations import math as fp_math
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import datetimes, fastdates

ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata"]
OPS = ["=", "!=", "<", "<=", ">", ">="]
UNITS = ["day", "days", "week", "weeks", "hour", "hours", "minute", "minutes", "second",
         "seconds", "millisecond", "milliseconds", "month", "months", "year", "years",
         "'d'", "'wk'", "'h'", "'min'", "'s'", "'ms'", "'mo'", "'a'", "mg"]


@contextmanager
def local_zone(name: str) -> Iterator[None]:
    """The process's local zone set to `name`, every memo of date-times emptied around it."""
    old = os.environ.get("TZ")

    def reset(zone: str | None) -> None:
        if zone is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = zone
        time.tzset()
        fastdates._PARSED.clear()
        fastdates._fp_datetime.cache_clear()

    reset(name)
    try:
        yield
    finally:
        reset(old)


def _two(n: int) -> str:
    return f"{n:02d}"


# Mostly valid fields, near month ends, leap days and the 2026 DST changes (US and UK), with
# some impossible ones (month 13, day 31 in April, hour 24, minute 60).
years = st.sampled_from(["2024", "2026", "2000", "1999", "2100", "1001", "9998", "1000", "0999",
                         "9999", "0000"])
months = st.one_of(st.integers(1, 12).map(_two), st.sampled_from(["00", "13", "03", "11", "02"]))
days = st.one_of(st.integers(1, 28).map(_two), st.sampled_from(["29", "30", "31", "00", "32",
                                                                 "08", "01", "25"]))
hours = st.one_of(st.integers(0, 23).map(_two), st.sampled_from(["01", "02", "00", "23", "24"]))
sixty = st.one_of(st.integers(0, 59).map(_two), st.sampled_from(["00", "30", "59", "60"]))
fractions = st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=9))
zones = st.one_of(st.none(), st.just("Z"), st.builds(
    lambda sign, hh, mm: f"{sign}{hh}:{mm}", st.sampled_from("+-"),
    st.sampled_from(["00", "01", "05", "10", "14", "23", "24"]),
    st.sampled_from(["00", "30", "45", "59", "60"])))


@st.composite
def datetime_texts(draw: st.DrawFn) -> str:
    """A text of fhirpathpy's date-time pattern (or, now and then, a time or not a date)."""
    odd = draw(st.integers(0, 19))
    if odd == 0:
        return draw(st.sampled_from(["12:00", "T12:00:00", "yesterday", "2026T12", "2026-05T12",
                                     "2026-05-18T12.5", "2026-05-18 12:00", "", "2026-5-1"]))
    text = draw(years)
    n = draw(st.sampled_from([1, 2, 3, 3, 4, 5, 6, 6, 6, 6]))
    parts = [draw(months), draw(days), draw(hours), draw(sixty), draw(sixty)][: n - 1]
    for sep, part in zip(["-", "-", "T", ":", ":"], parts, strict=False):
        text += sep + part
    if n == 6 and (fraction := draw(fractions)) is not None:
        text += "." + fraction
    if n >= 4 and (zone := draw(zones)) is not None:
        text += zone
    return text


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        result = fn(*args)
    except Exception as exc:  # fhirpathpy raises bare Exception, TypeError, UnboundLocalError...
        return "error", type(exc).__name__
    return "ok", [str(v) if isinstance(v, nodes.FP_Type) else v for v in util.arraify(result)]


def _operand(text: str, as_datetime: bool) -> tuple[list[Any], list[Any]]:
    """(fast path, fhirpathpy) collections: the text made a date-time, or left as text."""
    if not as_datetime:
        return [text], [text]
    fp = nodes.FP_DateTime(text)
    return fastdates.to_datetime([text]), [] if fp is None else [fp]


def _fhirpathpy_compare(op: str, left: list[Any], right: list[Any]) -> Any:
    if not left or not right:
        return []
    return fastdates.COMPARE[op](None, left, right)


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=400, deadline=None)
@given(a=datetime_texts(), b=datetime_texts(), op=st.sampled_from(OPS),
       a_dt=st.booleans(), b_dt=st.booleans())
def test_compare_agrees_with_fhirpathpy(zone: str, a: str, b: str, op: str, a_dt: bool,
                                        b_dt: bool) -> None:
    if not (a_dt or b_dt):
        b_dt = True  # text against text is the plain comparison, not a date-time one
    with local_zone(zone):
        (fast_a, slow_a), (fast_b, slow_b) = _operand(a, a_dt), _operand(b, b_dt)
        expected = _outcome(_fhirpathpy_compare, op, slow_a, slow_b)
        assert _outcome(fastdates.compare, op, fast_a, fast_b) == expected, (a, op, b)


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=400, deadline=None)
@given(a=datetime_texts(), amount=st.one_of(st.integers(-800, 800), st.sampled_from(
    [0, 1, 2, 5, 7, 24, 30, 77, 365, 366, 720, 1440, 3600, 10**7, -10**7, 10**12])),
    fraction=st.sampled_from(["", ".5", ".99"]), unit=st.sampled_from(UNITS),
    a_dt=st.booleans())
def test_plus_agrees_with_fhirpathpy(zone: str, a: str, amount: int, fraction: str, unit: str,
                                     a_dt: bool) -> None:
    quantity = nodes.FP_Quantity(Decimal(f"{amount}{fraction}"), unit)
    with local_zone(zone):
        fast, slow = _operand(a, a_dt)
        expected = _outcome(lambda: [] if not slow else fp_math.plus(None, slow, [quantity]))
        assert _outcome(fastdates.adder(quantity), fast) == expected, (a, amount, unit)


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=250, deadline=None)
@given(a=datetime_texts(), amount=st.integers(-400, 400), unit=st.sampled_from(UNITS[:16]),
       b=datetime_texts(), op=st.sampled_from(OPS))
def test_sum_compared_agrees_with_fhirpathpy(zone: str, a: str, amount: int, unit: str, b: str,
                                             op: str) -> None:
    """`a.toDateTime() + N unit OP b.toDateTime()`: the sum's text read back as a date-time."""
    quantity = nodes.FP_Quantity(Decimal(amount), unit)
    with local_zone(zone):
        (fast_a, slow_a), (fast_b, slow_b) = _operand(a, True), _operand(b, True)

        def slow() -> Any:
            summed = util.arraify(fp_math.plus(None, slow_a, [quantity])) if slow_a else []
            return _fhirpathpy_compare(op, slow_b, summed)

        expected = _outcome(slow)
        got = _outcome(lambda: fastdates.compare(op, fast_b, fastdates.adder(quantity)(fast_a)))
        assert got == expected, (b, op, a, amount, unit)


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=300, deadline=None)
@given(text=datetime_texts())
def test_parse_reads_what_fhirpathpy_reads(zone: str, text: str) -> None:
    with local_zone(zone):
        value = datetimes.parse(text)
        fp = nodes.FP_DateTime(text)
        if value is None:
            return
        assert fp is not None
        assert value.precision == fp._precision
        assert value.instant == fp._getDateTimeInt()
        normalized = fp._normalize_datetime(fp._getMatchAsList())
        assert value.utc == tuple(int(v) for v in normalized if v is not None)


@pytest.mark.parametrize(("text", "native"), [
    ("2026-05-18T12:00:00.123456+00:00", True), ("2026-05-18", True), ("2026", True),
    ("2026-05-18T12:00:00Z", True), ("2026-05-18T12:00:00", True), ("2026-05-18T12+05:30", True),
    ("2026-02-29", False), ("2026-05-18T24:00", False), ("2026T12", False),
    ("2026-05-18T12:00:00.1234567Z", False), ("0999-01-01", False), ("12:00", False)])
def test_parse_takes_the_common_shapes_only(text: str, native: bool) -> None:
    assert (datetimes.parse(text) is not None) is native


def test_worked_by_hand() -> None:
    """FHIRPath's rules as fhirpathpy applies them, one case each."""
    def cmp(op: str, a: str, b: str) -> Any:
        return fastdates.compare(op, fastdates.to_datetime([a]), fastdates.to_datetime([b]))

    def plus(a: str, n: int, unit: str) -> Any:
        return fastdates.adder(nodes.FP_Quantity(Decimal(n), unit))(fastdates.to_datetime([a]))

    with local_zone("UTC"):
        assert cmp("=", "2026-05-18T13:00:00+01:00", "2026-05-18T12:00:00Z") == [True]
        assert cmp("=", "2026-05", "2026") == []  # equal to the year: unknown
        assert cmp("=", "2026-05", "2025") == [False]
        assert cmp("<", "2026-05-18", "2026-05-18T10:00:00Z") == []  # same day: unknown
        assert cmp("<", "2026-05-17", "2026-05-18T10:00:00Z") == [True]
        # the hour moved to UTC is compared: 00:30+01:00 is the 17th in UTC
        assert cmp("<", "2026-05-18T00:30+01:00", "2026-05-18") == [True]
        # a `Z` counts as a field: equal precisions, yet no order at the common minutes
        assert cmp("<", "2026-05-18T12:00Z", "2026-05-18T12:00:00") == [False]
        assert cmp(">", "2026-05-18T12:00Z", "2026-05-18T12:00:00") == [False]
        with pytest.raises(TypeError):
            cmp("<=", "2026-05-18T12:00Z", "2026-05-18T12:00:00")
        assert plus("2026-03-02T12:00:00.123456+00:00", 77, "days") == [
            "2026-05-18T12:00:00.123+00:00"]
        assert plus("2026-03-02T13:00:00+01:00", 77, "days") == ["2026-05-18T12:00:00"]
        assert plus("2026-01-31", 1, "month") == ["2026-02-28"]
        assert plus("2024-02-29", 1, "year") == ["2025-02-28"]
        assert plus("2026-05", 45, "days") == ["2026-06"]  # whole months of 30 days
        assert plus("2026-05-18", 47, "hours") == ["2026-05-19"]  # whole days
    with local_zone("America/New_York"):
        # a value without a zone is local time: 08:00 in New York is 12:00 UTC in May
        assert cmp("=", "2026-05-18T08:00:00", "2026-05-18T12:00:00Z") == [True]
