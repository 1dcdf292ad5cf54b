"""The fast path's toDateTime() / date comparison / `+ N days` give fhirpathpy's answers.

Each pathway condition using date-times runs both ways on hand-made fact sets: no facts,
timezone offsets, date-only and minute-precision times, naive times (in several process time
zones), boundary equality, microseconds, partial dates, impossible dates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fhirpathpy.engine import nodes

from engine import fastdates
from engine.expressions import CompiledExpression, compile_expression, parse_strict
from engine.fastpath import compile_fast
from tests.engine.test_datetimes import ZONES, local_zone
from tests.engine.test_fastpath import _run

PATHWAYS = Path(__file__).resolve().parents[2] / "pathways"


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


PATHWAY_DATE_EXPRESSIONS = sorted({
    s for f in sorted(PATHWAYS.glob("*.yaml"))
    for s in _strings(yaml.safe_load(f.read_text())) if "toDateTime()" in s})

EXTRA = [  # the same shapes with the other operators, units and a date-time result
    "%a.where(time.toDateTime() < %b.first().time.toDateTime() + 6 hours).count()",
    "%a.where(time.toDateTime() > %b.first().time.toDateTime() + 1 day).exists()",
    "%a.where(time.toDateTime() <= %b.first().end.toDateTime()).last().value = 4",
    "%a.last().time.toDateTime() = %b.first().time.toDateTime()",
    "%a.last().time.toDateTime() != %b.first().time.toDateTime() + 2 weeks",
    "%b.first().time.toDateTime() + 3 days",
    "%a.time.toDateTime()",
]

SURGERY_END = "2026-03-02T12:00:00+00:00"  # 77 days later: 2026-05-18T12:00:00+00:00
FACT_SETS: dict[str, list[tuple[str, Any]]] = {
    "no facts": [],
    "boundary equality": [("2026-05-18T12:00:00+00:00", 5), ("2026-03-02T12:00:00+00:00", 2)],
    "a second before the boundary": [("2026-05-18T11:59:59+00:00", 6)],
    "timezone offsets": [("2026-05-18T13:00:00+01:00", 4), ("2026-05-18T07:30:00-05:00", 3),
                         ("2026-05-18T12:00:00Z", 7)],
    "date-only values": [("2026-05-18", 5), ("2026-05-19", 4), ("2026-03-02", 1)],
    "minute precision": [("2026-05-18T12:00+00:00", 5), ("2026-03-02T12:01+00:00", 2)],
    "milliseconds": [("2026-05-18T12:00:00.000+00:00", 5), ("2026-05-18T12:00:00.001Z", 3)],
    "naive times": [("2026-05-18T12:00:00", 4), ("2026-03-02T11:00:00", 9)],
    "not a date": [("yesterday", 4)],
    # as engine.facts writes times (Python's isoformat): microseconds, the zone's offset
    "microseconds": [("2026-05-18T12:00:00.000001+00:00", 5), ("2026-05-18T11:59:59.999999+00:00", 6),
                     ("2026-05-18T13:00:00.000000+01:00", 2)],
    "odd offsets": [("2026-05-18T17:30:00+05:30", 5), ("2026-05-18T12:00:00-00:00", 4),
                    ("2026-05-17T23:59:59-12:15", 3)],
    "fraction and Z": [("2026-05-18T12:00:00.000Z", 5), ("2026-05-18T12:00:00.5Z", 4)],
    "hours and months only": [("2026-05-18T12+00:00", 5), ("2026-05", 4), ("2026", 3),
                              ("2026-05-18T11Z", 2)],
    "impossible dates": [("2026-02-29T12:00:00Z", 5), ("2026-05-18T24:00:00Z", 4),
                         ("2026-05-18T12:00:00+24:00", 3)],
}
ANCHORS = {"aware": SURGERY_END, "date-only": "2026-03-02", "offset": "2026-03-02T14:00:00+02:00",
           "none": None, "microseconds": "2026-03-02T12:00:00.654321+00:00",
           "Z": "2026-03-02T12:00:00Z", "fraction and Z": "2026-03-02T12:00:00.250Z",
           "naive": "2026-03-02T12:00:00", "minutes": "2026-03-02T12:00+00:00",
           "month": "2026-03", "month end": "2026-01-31T23:30:00-01:00"}


def _env(names: tuple[str, ...], facts: list[tuple[str, Any]], anchor: str | None) -> dict:
    rows = [{"time": t, "value": v} for t, v in facts]
    anchor_rows = [] if anchor is None else [{"time": anchor, "end": anchor}]
    env: dict[str, Any] = {}
    for i, name in enumerate(names):
        anchorish = name in {"spine_surgery", "inpatient_stay", "b"}
        if name == "pain_service_referral":  # would make the follow-up condition true anyway
            env[name] = []
        else:
            env[name] = anchor_rows if anchorish else rows[i % 2::]
    return env


def _both(fn: Any, env: dict) -> tuple[str, Any]:
    status, result = _run(fn, None, env)  # date-time results compared by their text
    return status, None if result is None else [
        str(v) if isinstance(v, nodes.FP_Type) else v for v in result]


_COMPILED: dict[str, tuple[CompiledExpression, CompiledExpression]] = {}


def _fast_and_slow(text: str) -> tuple[CompiledExpression, CompiledExpression]:
    if text not in _COMPILED:
        _COMPILED[text] = compile_expression(text), compile_expression(text, fast=False)
    return _COMPILED[text]


@pytest.mark.parametrize("text", PATHWAY_DATE_EXPRESSIONS + EXTRA)
@pytest.mark.parametrize("facts", FACT_SETS, ids=list(FACT_SETS))
@pytest.mark.parametrize("anchor", ANCHORS, ids=list(ANCHORS))
def test_fast_dates_agree_with_fhirpathpy(text: str, facts: str, anchor: str) -> None:
    fast, slow = _fast_and_slow(text)
    env = _env(fast.env_names, FACT_SETS[facts], ANCHORS[anchor])
    assert _both(fast.evaluate, env) == _both(slow.evaluate, env), text


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("text", PATHWAY_DATE_EXPRESSIONS + EXTRA)
def test_times_without_zone_agree_in_any_local_zone(zone: str, text: str) -> None:
    """fhirpathpy reads a time without a zone as the process's local time; so does the fast path."""
    fast, slow = _fast_and_slow(text)
    with local_zone(zone):
        for anchor in ("naive", "aware", "date-only"):
            env = _env(fast.env_names, FACT_SETS["naive times"], ANCHORS[anchor])
            assert _both(fast.evaluate, env) == _both(slow.evaluate, env), (text, anchor)


def test_common_dates_never_reach_fhirpathpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Times as engine.facts writes them and dates are compared and shifted natively."""
    def refuse(*args: Any) -> Any:
        raise AssertionError("fhirpathpy's date code was called")

    monkeypatch.setattr(fastdates, "_fp_datetime", refuse)
    monkeypatch.setattr(fastdates, "COMPARE", dict.fromkeys(fastdates.COMPARE, refuse))
    monkeypatch.setattr(fastdates.fp_math, "plus", refuse)
    for text in PATHWAY_DATE_EXPRESSIONS:
        fast = compile_expression(text)
        for facts in ("boundary equality", "microseconds", "timezone offsets", "date-only values"):
            for anchor in ("aware", "microseconds", "date-only", "offset", "none"):
                fast.evaluate(None, _env(fast.env_names, FACT_SETS[facts], ANCHORS[anchor]))


def test_pathway_date_conditions_take_the_fast_path() -> None:
    assert len(PATHWAY_DATE_EXPRESSIONS) >= 3
    for text in PATHWAY_DATE_EXPRESSIONS:
        assert compile_fast(parse_strict(text)) is not None, text


def test_boundary_worked_by_hand() -> None:
    """A score exactly 77 days after surgery counts; one a second earlier does not."""
    text = "%a.where(time.toDateTime() >= %b.first().end.toDateTime() + 77 days).count()"
    env = {"b": [{"end": SURGERY_END}],
           "a": [{"time": "2026-05-18T12:00:00+00:00"}, {"time": "2026-05-18T11:59:59+00:00"},
                 {"time": "2026-05-18T13:00:00+01:00"}]}
    assert compile_expression(text).evaluate(None, env) == [2]
