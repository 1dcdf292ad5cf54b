"""The fact index sorts a concept's facts by time alone when no two share an instant: the order
is the full key's (time, source, value) all the same, ties and untimed facts included."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import facts as facts_module
from engine.facts import Fact, FactIndex

START = datetime(2026, 3, 28, 10, 0, tzinfo=UTC)


def random_facts(rng: random.Random, ties: bool) -> list[Fact]:
    out = []
    for n in range(rng.randint(2, 12)):
        hours = rng.randint(0, 3) if ties else n * 7 + rng.randint(0, 5)
        when = None if ties and rng.random() < 0.2 else START + timedelta(hours=hours)
        if when is not None and rng.random() < 0.3:
            when = when.astimezone(ZoneInfo("Europe/London"))  # the same instant, another zone
        out.append(Fact("pain_score", when, value=rng.choice([3, 7, "7", 7.0, None]),
                        source=rng.choice([None, "Observation/a", "Observation/b"])))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("ties", [False, True])
def test_the_index_order_is_the_full_keys(ties: bool) -> None:
    rng = random.Random(7 if ties else 3)
    for _ in range(300):
        items = random_facts(rng, ties)
        want = sorted(items, key=facts_module._sort_key)
        got = list(items)
        facts_module._sort(got)
        assert [id(f) for f in got] == [id(f) for f in want]
        index = FactIndex.build(tuple(items), START + timedelta(days=30))
        assert [id(f) for f in index.get("pain_score")] == [id(f) for f in want]
