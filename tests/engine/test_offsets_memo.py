"""Offsets parsed once per text (evaluations and outcomes parse the same few texts at every apply)
and a recurrence's slots placed without building an offset per slot: the same answers as
parsing and scaling afresh, across DST changes and local days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import offsets
from engine.offsets import Offset, parse_duration, parse_offset

LONDON = ZoneInfo("Europe/London")
TEXTS = ["0", "-0", "6h", "90min", "-30d", "1d12h", "-4w", "day 1", "day -1 08:30", "day 3 end", " 2h "]


@pytest.mark.parametrize("text", TEXTS)
def test_a_memoised_offset_equals_one_parsed_afresh(text: str) -> None:
    fresh = offsets._parsed.__wrapped__(text.strip())
    assert parse_offset(text) == parse_offset(text) == fresh
    assert parse_offset(text).delta == fresh.delta


def test_another_text_is_parsed_again_and_errors_are_raised_every_time() -> None:
    assert parse_offset("2h") != parse_offset("3h")
    assert parse_offset("3h") == Offset(minutes=180)
    for _ in range(2):
        with pytest.raises(ValueError, match="impossible time of day"):
            parse_offset("day 1 25:00")
        with pytest.raises(ValueError, match="must be a length"):
            parse_duration("day 2")


@pytest.mark.parametrize("every", ["4h", "90min", "1d", "1w", "1d6h", "0"])
@pytest.mark.parametrize("tz", [UTC, LONDON])
def test_apply_scaled_equals_scaling_then_applying(every: str, tz: ZoneInfo) -> None:
    step = parse_offset(every)
    # Around the night British Summer Time starts (29 March 2026), and an anchor in another zone.
    anchors = [datetime(2026, 3, 28, 10, 0, tzinfo=UTC) + timedelta(hours=7 * k) for k in range(8)]
    anchors.append(datetime(2026, 3, 28, 23, 30, tzinfo=LONDON))
    for anchor in anchors:
        for factor in range(6):
            got = step.apply_scaled(factor, anchor, tz)
            want = step.scaled(factor).apply(anchor, tz)
            assert (got, got.tzinfo) == (want, want.tzinfo)
