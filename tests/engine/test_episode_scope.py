"""Episode scope: rules read this episode only; history concepts stay visible (lumbar pathway)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.context import EvaluationContext, episode_start
from engine.evaluate import evaluate
from engine.facts import Fact, PatientFacts
from engine.loader import load_pathway
from engine.plan import plan_of
from engine.results import Status
from tests.engine.helpers import LONDON
from tests.pathways.test_pathway_files import PATHWAYS

D, H = timedelta(days=1), timedelta(hours=1)
LUMBAR = load_pathway(PATHWAYS / "lumbar_fusion.yaml")
# Surgery Wed 15 Apr 2026 08:00-12:00 UTC; the booking was seen (enrolment) on 20 Feb 2026.
START = datetime(2026, 4, 15, 8, tzinfo=UTC)
END = START + 4 * H
ENROLLED = datetime(2026, 2, 20, 10, tzinfo=UTC)
# The bound: the earlier of enrolment (20 Feb) and the booked date (15 Apr), minus 90 days
# (look_back in lumbar_fusion.yaml) = 22 Nov 2025 10:00 UTC (GMT on both dates).
BOUND = datetime(2025, 11, 22, 10, tzinfo=UTC)
YEARS_AGO = datetime(2023, 1, 10, 9, tzinfo=UTC)
NOW = END + 2 * H


def episode(*facts: Fact, sex: str = "male") -> PatientFacts:
    base = (Fact("spine_surgery_booked", START, source="ServiceRequest/b", recorded=ENROLLED),
            Fact("spine_surgery", START, END, source="Procedure/s"),
            Fact("spinal_fusion", START, END, source="Procedure/s"),
            Fact("inpatient_stay", START - 3 * H, source="Encounter/e", status="in-progress"),
            Fact("tobacco_smoking_status", START - 20 * D, value="current_smoker"))
    return PatientFacts("p1", "e1", sex=sex, birth_date=date(1960, 1, 1), enrolled_at=ENROLLED,
                        facts=(*base, *facts))


def test_episode_start_is_enrolment_minus_look_back() -> None:
    assert episode_start(LUMBAR, episode(), LONDON) == BOUND


def test_episode_start_from_a_booking_older_than_the_enrolment() -> None:
    # Enrolled (the engine first saw her) 3 months after surgery: the episode starts from the
    # booked date, 15 Apr 08:00 UTC = 09:00 BST; 90 local days earlier is 15 Jan 09:00 GMT
    # = 09:00 UTC (days move the local calendar, keeping the wall time).
    late = PatientFacts("p1", "e1", enrolled_at=datetime(2026, 7, 15, tzinfo=UTC),
                        facts=(Fact("spine_surgery_booked", START, recorded=START - 30 * D),))
    assert episode_start(LUMBAR, late, LONDON) == datetime(2026, 1, 15, 9, tzinfo=UTC)


# Male current smoker: 0 Apfel points before the rows' facts.
@pytest.mark.parametrize(("facts", "apfel"), [
    ([], 0),
    ([Fact("opioid_planned", YEARS_AGO, status="active")], 0),          # another episode's prescription
    ([Fact("opioid_planned", BOUND - H, status="active")], 0),          # an hour before the bound
    ([Fact("opioid_planned", BOUND + H, status="active")], 1),          # inside the look-back
    ([Fact("opioid_planned", START - 7 * D, status="active")], 1),      # this episode's plan
    ([Fact("ponv_history", datetime(2019, 5, 1, tzinfo=UTC))], 1),       # history: always visible
    ([Fact("motion_sickness", YEARS_AGO)], 1),
])
def test_episode_scope_apfel_counts_this_episodes_opioid_plan_and_any_history(facts, apfel) -> None:
    assert evaluate(LUMBAR, episode(*facts), now=NOW, tz=LONDON).variables["apfel"] == apfel


def test_episode_scope_old_smoking_status_is_history() -> None:
    # The only status is from 2023 (current smoker): still the latest, so no non-smoker point.
    facts = PatientFacts("p1", "e1", sex="male", enrolled_at=ENROLLED, facts=(
        Fact("spine_surgery_booked", START, recorded=ENROLLED),
        Fact("tobacco_smoking_status", YEARS_AGO, value="current_smoker")))
    assert evaluate(LUMBAR, facts, now=NOW, tz=LONDON).variables["apfel"] == 0


def test_episode_scope_ketorolac_clock_starts_at_this_episodes_first_dose() -> None:
    old, new = "MedicationAdministration/old", "MedicationAdministration/new"
    facts = episode(Fact("ketorolac_administered", YEARS_AGO, value=30, unit="mg", source=old),
                    Fact("ketorolac_administered", END, value=30, unit="mg", source=new))
    ctx = EvaluationContext(LUMBAR, plan_of(LUMBAR), facts, NOW, LONDON)
    assert [f["source"] for f in ctx.var("ketorolac_administered")] == [new]


@pytest.mark.parametrize(("inserted", "applicable"), [
    (YEARS_AGO, False),                  # an old catheter (no end recorded) is not this episode's
    (START + H, True),                   # inserted during this surgery
])
def test_episode_scope_old_catheter_ignored(inserted, applicable) -> None:
    facts = episode(Fact("urinary_catheter_inserted", inserted, source="Procedure/cath", status="completed"))
    result = next(e for e in evaluate(LUMBAR, facts, now=NOW, tz=LONDON).elements
                  if e.element_id == "urinary_catheter_removal")
    assert (result.status is not Status.NOT_APPLICABLE) is applicable


def test_episode_scope_old_stay_is_not_this_admission() -> None:
    old = Fact("inpatient_stay", YEARS_AGO, YEARS_AGO + 3 * D, source="Encounter/old")
    evaluation = evaluate(LUMBAR, episode(old), now=NOW, tz=LONDON)
    assert evaluation.anchors["admission"] == START - 3 * H


def test_episode_scope_without_enrolment_or_booking_sees_everything() -> None:
    facts = PatientFacts("p1", "e1", sex="male", facts=(
        Fact("spine_surgery", START, END),
        Fact("tobacco_smoking_status", START - 20 * D, value="current_smoker"),
        Fact("opioid_planned", YEARS_AGO, status="active")))
    assert evaluate(LUMBAR, facts, now=NOW, tz=LONDON).variables["apfel"] == 1
