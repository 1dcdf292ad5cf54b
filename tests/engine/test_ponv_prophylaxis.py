"""PONV prophylaxis counted by distinct intervention class, from 4 h before surgery start to
surgery end; a dose after a nausea or vomiting record is rescue (Gan 2020; clinical.md Second review)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.evaluate import evaluate
from engine.facts import Fact, PatientFacts
from engine.loader import load_pathway
from engine.results import Status
from tests.engine.helpers import LONDON
from tests.pathways.test_pathway_files import PATHWAYS

H, MIN = timedelta(hours=1), timedelta(minutes=1)
LUMBAR = load_pathway(PATHWAYS / "lumbar_fusion.yaml")
START = datetime(2026, 4, 15, 8, tzinfo=UTC)
END = START + 4 * H
# The element window closes 12 h after surgery start (= 8 h after the end): judged after it.
NOW = START + 13 * H
INDUCTION, CLOSING = START + 5 * MIN, END - 10 * MIN


def drug(cls: str, when: datetime) -> Fact:
    return Fact("antiemetic_administered", when, value=1, attrs={"antiemetic_class": cls},
                source=f"MedicationAdministration/{cls}-{when:%H%M}")


DEXA, OND, DROP, NK1 = "corticosteroid", "5ht3-antagonist", "dopamine-antagonist", "nk1-antagonist"
PC6 = Fact("pc6_bands_applied", START - 40 * MIN, source="Procedure/pc6")
PC6_AGAIN = Fact("pc6_bands_applied", START - 30 * MIN, source="Procedure/pc6-2")
TIVA = Fact("tiva_propofol", START, END, source="Procedure/tiva")


def patient(*facts: Fact, high_risk: bool) -> PatientFacts:
    # Female non-smoker: Apfel 2 (moderate: 2 interventions); with a PONV history and an
    # opioid plan: Apfel 4 (high: 3 interventions).
    history = (Fact("ponv_history", datetime(2019, 5, 1, tzinfo=UTC)),
               Fact("opioid_planned", START - 24 * H, status="active")) if high_risk else ()
    base = (Fact("spine_surgery_booked", START, recorded=START - 60 * 24 * H),
            Fact("spine_surgery", START, END), Fact("spinal_fusion", START, END),
            Fact("inpatient_stay", START - 3 * H),
            Fact("tobacco_smoking_status", START - 72 * H, value="never_smoker"))
    return PatientFacts("p1", "e1", sex="female", birth_date=date(1970, 1, 1),
                        enrolled_at=START - 60 * 24 * H, facts=(*base, *history, *facts))


def status(element: str, facts: PatientFacts) -> Status:
    evaluation = evaluate(LUMBAR, facts, now=NOW, tz=LONDON)
    return next(e for e in evaluation.elements if e.element_id == element).status


@pytest.mark.parametrize(("facts", "expected"), [
    ([drug(DEXA, INDUCTION), drug(OND, CLOSING)], Status.DONE),
    ([drug(OND, INDUCTION), drug(OND, CLOSING)], Status.MISSED),               # one class, twice
    ([drug(OND, CLOSING), PC6], Status.DONE),                                  # PC6 counts
    ([drug(OND, CLOSING), PC6, PC6_AGAIN], Status.DONE),
    ([PC6, PC6_AGAIN], Status.MISSED),                                          # PC6 twice is one
    ([TIVA, drug(DEXA, INDUCTION)], Status.DONE),                               # TIVA counts
    ([drug(DEXA, INDUCTION), drug(OND, END + 30 * MIN)], Status.MISSED),        # after surgery end
    ([drug(DEXA, START - 5 * H), drug(OND, CLOSING)], Status.MISSED),           # before -4 h
    # Nausea NRS 3 recorded 20 min before the documented end: the ondansetron after it is rescue.
    ([drug(DEXA, INDUCTION), Fact("nausea_score", END - 20 * MIN, value=3), drug(OND, CLOSING)],
     Status.MISSED),
    ([drug(DEXA, INDUCTION), Fact("vomiting_episode", END - 20 * MIN), drug(OND, CLOSING)],
     Status.MISSED),
    # A nausea score of 0 is a record of no nausea: the dose after it is still prophylaxis.
    ([drug(DEXA, INDUCTION), Fact("nausea_score", END - 20 * MIN, value=0), drug(OND, CLOSING)],
     Status.DONE),
])
def test_ponv_prophylaxis_moderate_risk_counts_distinct_classes(facts, expected) -> None:
    assert status("ponv_prophylaxis_moderate_risk", patient(*facts, high_risk=False)) is expected


@pytest.mark.parametrize(("facts", "expected"), [
    ([drug(DEXA, INDUCTION), drug(OND, CLOSING), drug(DROP, CLOSING)], Status.DONE),
    ([drug(DEXA, INDUCTION), drug(OND, INDUCTION), drug(OND, CLOSING)], Status.MISSED),  # 2 classes
    ([drug(DEXA, INDUCTION), drug(OND, CLOSING), PC6], Status.DONE),
    ([drug(DEXA, INDUCTION), drug(OND, CLOSING), drug(NK1, START - 2 * H)], Status.DONE),
    ([drug(DEXA, INDUCTION), TIVA, PC6], Status.DONE),
])
def test_ponv_prophylaxis_high_risk_needs_three_classes(facts, expected) -> None:
    assert status("ponv_prophylaxis_high_risk", patient(*facts, high_risk=True)) is expected


def test_ponv_prophylaxis_apfel_picks_the_element() -> None:
    assert status("ponv_prophylaxis_high_risk", patient(high_risk=False)) is Status.NOT_APPLICABLE
    assert status("ponv_prophylaxis_moderate_risk", patient(high_risk=True)) is Status.NOT_APPLICABLE
