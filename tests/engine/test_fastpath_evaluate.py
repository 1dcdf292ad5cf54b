"""Whole evaluations with the fast path equal evaluations with fhirpathpy everywhere.

Every shipped pathway is loaded twice — its conditions compiled for the fast path, and for
fhirpathpy alone — and both evaluate the same generated patients: the synthetic bench
patients, plus the facts the date conditions read (ketorolac doses, nausea and vomiting,
antiemetics with their classes, catheters and drains, follow-up pain and opioid use), their
times written in several zones, with and without fractions of a second, over the whole
timeline (before booking to well after discharge).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.synthetic import synthetic_patient
from engine import checks, context
from engine.evaluate import evaluate
from engine.expressions import compile_expression
from engine.facts import Fact, PatientFacts
from engine.loader import load_pathway
from engine.model import Pathway

PATHWAYS = Path(__file__).resolve().parents[2] / "pathways"
LONDON = ZoneInfo("Europe/London")
WRITTEN_IN = [UTC, LONDON, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"),
              timezone(timedelta(hours=-3, minutes=-30))]
CLASSES = ["5ht3-antagonist", "corticosteroid", "dopamine-antagonist", "nk1-antagonist", None]
RENAMED = {"colorectal": {"spine_surgery_booked": "colorectal_surgery_booked",
                          "spine_surgery": "colorectal_resection", "spinal_fusion": "colorectal_resection"}}


def _both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Pathway, Pathway]:
    fast = load_pathway(path)
    with monkeypatch.context() as patch:
        patch.setattr(checks, "compile_expression", partial(compile_expression, fast=False))
        slow = load_pathway(path)
    return fast, slow


def _dated_facts(i: int, rng: random.Random, end: datetime) -> list[Fact]:
    """What the date conditions read, around the end of surgery `end`."""
    out: list[Fact] = []
    first = end + timedelta(hours=rng.uniform(-1, 3))
    for k in range(rng.choice([0, 0, 3, 6, 12])):  # ketorolac: sometimes past 2 or 5 days
        out.append(Fact("ketorolac_administered", first + timedelta(hours=k * rng.choice([6, 8, 12])),
                        value=rng.choice([15, 30]), unit="mg", source=f"MedicationAdministration/k{i}-{k}"))
    for k in range(rng.choice([0, 2, 5])):
        out.append(Fact("nausea_score", end + timedelta(hours=rng.uniform(0, 30)),
                        value=rng.randint(0, 8), source=f"Observation/n{i}-{k}"))
    if rng.random() < 0.3:
        out.append(Fact("vomiting_episode", end + timedelta(hours=rng.uniform(0, 20)),
                        source=f"Observation/v{i}"))
    for k in range(rng.choice([1, 3, 4])):
        cls = rng.choice(CLASSES)
        out.append(Fact("antiemetic_administered", end + timedelta(hours=rng.uniform(-3, 24)),
                        source=f"MedicationAdministration/ae{i}-x{k}",
                        attrs={} if cls is None else {"antiemetic_class": cls}))
    for concept in ("urinary_catheter_inserted", "surgical_drain_inserted", "surgical_drain_removed",
                    "nasogastric_tube_inserted"):
        if rng.random() < 0.3:
            out.append(Fact(concept, end + timedelta(hours=rng.uniform(-6, 30)),
                            source=f"Procedure/{concept[:8]}{i}"))
    follow_up = end + timedelta(days=rng.choice([60, 76, 77, 78, 90]), hours=rng.uniform(-12, 12))
    if rng.random() < 0.6:
        out.append(Fact("pain_score", follow_up, value=rng.randint(0, 9), source=f"Observation/fp{i}"))
    if rng.random() < 0.4:
        out.append(Fact("opioid_use_at_follow_up", follow_up, value=rng.random() < 0.5,
                        source=f"Observation/fo{i}"))
    return out


def _written(t: datetime | None, zone: timezone | ZoneInfo, whole: bool) -> datetime | None:
    """The same instant as a site might send it: in another zone, maybe in whole seconds."""
    if t is None:
        return None
    t = t.astimezone(zone)
    return t.replace(microsecond=0) if whole else t


def patients(count: int, seed: int, renamed: dict[str, str]) -> list[tuple[PatientFacts, datetime]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        facts, now = synthetic_patient(i, rng)
        end = next(f.end for f in facts.facts if f.concept == "spine_surgery" and f.end)
        zone, whole = rng.choice(WRITTEN_IN), rng.random() < 0.4
        items = [replace(f, concept=renamed.get(f.concept, f.concept), time=_written(f.time, zone, whole),
                         end=_written(f.end, zone, whole))
                 for f in (*facts.facts, *_dated_facts(i, rng, end))]
        later = now + timedelta(days=rng.choice([0, 0, 10, 80]))
        out.append((replace(facts, facts=tuple(items)), later))
    return out


@pytest.mark.parametrize("name", ["lumbar_fusion", "colorectal"])
def test_evaluate_fast_equals_fhirpathpy_everywhere(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _both_ways(PATHWAYS / f"{name}.yaml", monkeypatch)
    checked = 0
    for facts, now in patients(40, seed=len(name), renamed=RENAMED.get(name, {})):
        results = []
        for pathway in (fast, slow):
            # conditions shared across patients are memoised by their text: start each afresh
            monkeypatch.setattr(context, "_SHARED_MEMO", {})
            monkeypatch.setattr(context, "_SHARED_FACT_MEMO", {})
            results.append(evaluate(pathway, facts, now=now, tz=LONDON))
        assert results[0] == results[1], facts.patient_id
        checked += sum(1 for r in results[0].elements if r.status.value != "upcoming")
    assert checked > 40 * 10  # the patients reach far into their pathway, not all upcoming
