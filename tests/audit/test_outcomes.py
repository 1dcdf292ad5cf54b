"""Outcomes from facts: one row per clinical case, local days in the hospital's zone, definitions as data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

import pytest

from engine.errors import InvalidPathway
from engine.facts import Fact, PatientFacts, Value
from engine.loader import DEFAULT_TERMINOLOGY
from engine.outcomes import DEFAULT_OUTCOMES, PatientOutcomes, load_outcome_definitions, patient_outcomes
from engine.results import Evaluation
from engine.terminology import load_terminology
from tests.audit.cohort import LONDON

H = timedelta(hours=1)
D = timedelta(days=1)
W = timedelta(weeks=1)
# Surgery ends Saturday 28 March 2026 15:00 UTC; London moves to BST on Sunday 29 March 01:00 UTC.
START = datetime(2026, 3, 28, 10, 0, tzinfo=UTC)
END = START + 5 * H
ADMITTED = START - 4 * H
DISCHARGED = datetime(2026, 3, 31, 18, 0, tzinfo=UTC)
LATER = DISCHARGED + 200 * D
DEFINITIONS = load_outcome_definitions()


def outcomes(*facts: Fact, now: datetime = LATER, discharged: datetime | None = DISCHARGED,
             tz: tzinfo = LONDON) -> PatientOutcomes:
    anchors = {"surgery_start": START, "surgery_end": END, "admission": ADMITTED,
               "discharge": discharged}
    evaluation = Evaluation("lumbar_fusion", 1, "p1", "e1", now, anchors, {}, (), (), None)
    return patient_outcomes(PatientFacts("p1", "e1", facts=facts), evaluation,
                            definitions=DEFINITIONS, tz=tz)


def fact(concept: str, when: datetime, value: Value = None, **attrs: object) -> Fact:
    return Fact(concept, when, value=value, attrs=attrs)


def stay(start: datetime) -> Fact:
    return Fact("inpatient_stay", start, start + 2 * D)


@pytest.mark.parametrize(("facts", "now", "discharged", "expected"), [
    ([], LATER, DISCHARGED, 3.5),                        # 06:00 Mar 28 -> 18:00 Mar 31
    ([], LATER, None, None),                             # still in hospital
])
def test_outcomes_length_of_stay(facts, now, discharged, expected) -> None:
    assert outcomes(*facts, now=now, discharged=discharged).length_of_stay_days == expected


@pytest.mark.parametrize(("facts", "now", "expected"), [
    ([stay(DISCHARGED + 30 * D)], LATER, True),          # the 30th day counts
    ([stay(DISCHARGED + 30 * D + timedelta(minutes=1))], LATER, False),
    ([], LATER, False),
    ([], DISCHARGED + 10 * D, None),                     # 30 days not over yet
    ([stay(DISCHARGED + 3 * D)], DISCHARGED + 10 * D, True),
])
def test_outcomes_readmission_within_30_days(facts, now, expected) -> None:
    assert outcomes(*facts, now=now).readmitted is expected


@pytest.mark.parametrize(("facts", "now", "at_24h", "at_72h"), [
    ([], LATER, False, False),
    ([fact("nausea_score", END + 2 * H, 3)], LATER, False, False),      # below the threshold 4
    ([fact("nausea_score", END + 2 * H, 4)], LATER, True, True),
    ([fact("nausea_score", END - H, 8)], LATER, False, False),          # before surgery end
    ([fact("vomiting_episode", END + 25 * H)], LATER, False, True),
    ([fact("antiemetic_administered", END)], LATER, False, False),      # prophylaxis at the end
    # Second review: an antiemetic after surgery end with no nausea record is not PONV...
    ([fact("antiemetic_administered", END + timedelta(minutes=1))], LATER, False, False),
    # ...one given after a nausea record (even below the threshold, NRS 2) is rescue: PONV.
    ([fact("nausea_score", END + 3 * H, 2), fact("antiemetic_administered", END + 4 * H)],
     LATER, True, True),
    ([fact("antiemetic_administered", END + 3 * H), fact("nausea_score", END + 4 * H, 2)],
     LATER, False, False),                                              # nausea came after the dose
    ([fact("nausea_score", END + 3 * H, 0), fact("antiemetic_administered", END + 4 * H)],
     LATER, False, False),                                              # a record of no nausea
    ([], END + 30 * H, False, None),                                    # 72 h not over yet
])
def test_outcomes_ponv_within_24_and_72_hours(facts, now, at_24h, at_72h) -> None:
    got = outcomes(*facts, now=now).ponv
    assert (got["ponv_24h"], got["ponv_72h"]) == (at_24h, at_72h)


@pytest.mark.parametrize(("facts", "expected"), [
    ([fact("out_of_bed", END + 6 * H)], 6.0),
    ([fact("out_of_bed", END + 6 * H), fact("ambulation", END + 3 * H)], 3.0),
    ([fact("out_of_bed", START - 2 * H), fact("ambulation", END + 20 * H)], 20.0),  # pre-op ignored
    ([], None),
])
def test_outcomes_hours_to_first_mobilisation(facts, expected) -> None:
    assert outcomes(*facts).hours_to_mobilisation == expected


@pytest.mark.parametrize(("facts", "expected"), [
    ([fact("urinary_catheter_inserted", START), fact("urinary_catheter_removed", START + 30 * H)], 30.0),
    # Episode scope: a catheter from an earlier stay (2 years ago) is not this stay's.
    ([fact("urinary_catheter_inserted", START - 730 * D), fact("urinary_catheter_removed", START - 729 * D),
      fact("urinary_catheter_inserted", START), fact("urinary_catheter_removed", START + 20 * H)], 20.0),
    ([fact("urinary_catheter_inserted", START - 730 * D),
      fact("urinary_catheter_removed", START + 20 * H)], None),
    ([fact("urinary_catheter_inserted", START)], None),   # not removed yet
    ([], None),
])
def test_outcomes_catheter_duration(facts, expected) -> None:
    assert outcomes(*facts).catheter_hours == expected


# 31 March 23:30 UTC is 1 April 00:30 in London: POD4 there, POD3 in UTC.
OPIOIDS = [fact("opioid_administered", START + H, 10, mme=10.0),      # intra-operative: not counted
           fact("opioid_administered", END + H, 10, mme=15.0),        # POD0
           fact("opioid_administered", END + 2 * H, 10),              # no MME factor: not added
           fact("opioid_administered", datetime(2026, 3, 31, 23, 30, tzinfo=UTC), 5, mme=7.5)]


@pytest.mark.parametrize(("tz", "now", "expected"), [
    (LONDON, LATER, 15.0),
    (UTC, LATER, 22.5),
    (LONDON, datetime(2026, 3, 31, 22, 0, tzinfo=UTC), None),   # POD3 not over
])
def test_outcomes_opioid_mme_pod0_to_pod3_in_local_days(tz, now, expected) -> None:
    assert outcomes(*OPIOIDS, now=now, tz=tz).opioid_mme == expected


def test_outcomes_opioid_unconverted_doses_counted_and_listed_not_added() -> None:
    doses = [Fact("opioid_administered", END + H, value=10, source="MedicationAdministration/a",
                  attrs={"mme": 15.0}),                                   # oral oxycodone 10 mg
             Fact("opioid_administered", END + 2 * H, value=2, unit="tablet",
                  source="MedicationAdministration/b",
                  attrs={"mme_unconverted": "no MME factor for oxycodone oral in unit tablet"}),
             Fact("opioid_administered", START + H, value=100, unit="ug",   # intra-op: outside POD0-3
                  source="MedicationAdministration/c", attrs={"mme_unconverted": "x"})]
    got = outcomes(*doses)
    assert (got.opioid_mme, got.opioid_unconverted, got.opioid_unconverted_doses) == (
        15.0, 1.0, ("MedicationAdministration/b",))
    assert got.values()["opioid_unconverted"] == 1.0


@pytest.mark.parametrize(("facts", "mean", "maximum"), [
    ([fact("pain_score", datetime(2026, 3, 29, 8, 0, tzinfo=UTC), 3),
      fact("pain_score", datetime(2026, 3, 29, 20, 0, tzinfo=UTC), 5),
      fact("pain_score", datetime(2026, 3, 29, 23, 30, tzinfo=UTC), 9)], 4.0, 5.0),  # 00:30 BST = POD2
    ([fact("pain_score", END + 2 * H, 7)], None, None),        # POD0 only
])
def test_outcomes_pain_on_pod1(facts, mean, maximum) -> None:
    got = outcomes(*facts)
    assert (got.pain_pod1_mean, got.pain_pod1_max) == (mean, maximum)


@pytest.mark.parametrize(("facts", "expected"), [
    ([fact("odi_score", START - 60 * D, 60), fact("odi_score", START - 10 * D, 50),
      fact("odi_score", END + 12 * W, 30)], -20.0),            # the last baseline
    ([fact("odi_score", START - 10 * D, 50), fact("odi_score", END + 8 * W, 30)], None),
    ([fact("odi_score", END + 12 * W, 30)], None),
])
def test_outcomes_odi_change(facts, expected) -> None:
    assert outcomes(*facts).odi_change == expected


@pytest.mark.parametrize(("facts", "expected"), [
    ([fact("daily_steps", END + 5 * W + D, 3000), fact("daily_steps", END + 6 * W, 5000)], 4000.0),
    ([fact("daily_steps", END + 4 * W, 3000)], None),
])
def test_outcomes_steps_around_week_6(facts, expected) -> None:
    assert outcomes(*facts).daily_steps == expected


def test_outcomes_values_flatten_ponv_windows() -> None:
    names = list(outcomes().values())
    assert names[:4] == ["length_of_stay_days", "readmitted", "ponv_24h", "ponv_72h"]


@pytest.mark.parametrize("path", sorted(DEFAULT_OUTCOMES.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_outcome_definitions_files_load_against_default_terminology(path: Path) -> None:
    assert load_outcome_definitions(path, load_terminology(DEFAULT_TERMINOLOGY)).ponv.windows


def test_outcome_definitions_default_thresholds() -> None:
    assert DEFINITIONS.readmission.within == "30d" and DEFINITIONS.ponv.nausea_at_least == 4
    assert DEFINITIONS.ponv.windows == {"ponv_24h": "24h", "ponv_72h": "72h"}
    assert (DEFINITIONS.opioids.first_day, DEFINITIONS.opioids.last_day) == (0, 3)


@pytest.mark.parametrize(("change", "where", "message"), [
    (("within: 30d", "withn: 30d"), "readmission.withn", "unknown key"),
    (("ponv_24h: 24h", "ponv_24h: day 1"), "ponv.windows.ponv_24h", "length"),
    (("concept: daily_steps", "concept: day_steps"), "steps.concept", "unknown concept 'day_steps'"),
])
def test_outcome_definitions_errors_name_file_line_and_key(tmp_path: Path, change, where, message) -> None:
    text = DEFAULT_OUTCOMES.read_text().replace(*change)
    bad = tmp_path / "outcomes.yaml"
    bad.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if change[1] in row)
    with pytest.raises(InvalidPathway) as err:
        load_outcome_definitions(bad, load_terminology(DEFAULT_TERMINOLOGY))
    problem = next(p for p in err.value.problems if p.path == where)
    assert (problem.file, problem.line) == (str(bad), line)
    assert message in problem.message
