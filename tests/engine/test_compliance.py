"""Compliance arithmetic: done ÷ counted, with not-applicable and not-yet-due excluded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.audit import OutcomeStat, outcome_groups
from engine.compliance import (
    CohortFigures,
    PatientCompliance,
    Ratio,
    cohort_compliance,
    cohort_figures,
    element_ratio,
    is_high,
    item_ratios,
    patient_compliance,
)
from engine.evaluate import evaluate
from engine.facts import Fact, TaskState
from engine.results import ElementResult, Status
from tests.engine.helpers import BOOKED, LONDON, SURGERY_START, at, pathway, patient


@pytest.mark.parametrize(("status", "counts", "ratio"), [
    (Status.DONE, "done", Ratio(1, 1)),
    (Status.MISSED, "not-done", Ratio(0, 1)),
    (Status.OVERDUE, "not-done", Ratio(0, 1)),
    (Status.DECLINED, "not-done", Ratio(0, 1)),
    (Status.DECLINED, None, Ratio(0, 0)),
    (Status.NOT_APPLICABLE, None, Ratio(0, 0)),
    (Status.UPCOMING, None, Ratio(0, 0)),
    (Status.DUE, None, Ratio(0, 0)),
])
def test_element_ratio_by_status(status, counts, ratio) -> None:
    assert element_ratio(ElementResult("e", "post-op", "analgesia", status, counts=counts)) == ratio


def test_patient_compliance_counts_only_due_or_closed_elements() -> None:
    # One day before surgery: education missed; pre-op PC6 not yet open; post-op unknown.
    edu = Fact("education_delivered", SURGERY_START - timedelta(days=20))
    ev = evaluate(pathway(), patient(edu, sex="male"), now=SURGERY_START - timedelta(days=1),
                  tz=LONDON)
    pc = patient_compliance(ev)
    assert pc.by_element["education"] == Ratio(1, 1)
    assert pc.by_element["pain_score"] == Ratio(0, 0)
    assert pc.overall == Ratio(1, 1)
    assert pc.by_phase["pre-admission"] == Ratio(1, 1)


def test_cohort_compliance_per_element_phase_patient_and_high_share() -> None:
    edu = Fact("education_delivered", SURGERY_START - timedelta(days=20))
    walked = Fact("ambulation", at(2), source="Procedure/oob")
    refused = TaskState("enr1:out_of_bed:0", "cancelled", at=at(1), reason="patient-refused")
    now = at(7)
    a = patient_compliance(evaluate(pathway(), patient(edu, walked, sex="male"), now=now, tz=LONDON))
    b = patient_compliance(evaluate(pathway(), patient(sex="male", tasks=(refused,)), now=now,
                                    tz=LONDON))
    report = cohort_compliance([a, b], high_threshold=0.7)
    assert report.by_element["education"] == Ratio(1, 2)
    assert report.by_element["out_of_bed"] == Ratio(1, 2)
    assert a.overall.done > 0 and b.overall.done == 0
    assert report.overall == a.overall + b.overall
    assert report.high.counted == 2
    assert report.high.done == (1 if a.is_high(0.7) else 0)


def test_ratio_formats_percent() -> None:
    assert str(Ratio(7, 10)) == "7/10 (70%)"
    assert str(Ratio()) == "0/0 (n/a)"
    assert BOOKED < SURGERY_START


# ERAS-item figure (EIAS): one result per item; an item counts when any of its elements counts
# and is compliant when every element that counts is done.
@pytest.mark.parametrize(("elements", "expected"), [
    # item 17 = risk assessment + prophylaxis + PC6: all three done -> 1/1
    ({"risk": Ratio(1, 1), "prophylaxis": Ratio(1, 1), "pc6": Ratio(1, 1)}, {17: Ratio(1, 1)}),
    # one of three not done (done late, declined or missing alike) -> 0/1, not 2/3
    ({"risk": Ratio(1, 1), "prophylaxis": Ratio(0, 1), "pc6": Ratio(1, 1)}, {17: Ratio(0, 1)}),
    # PC6 contraindicated (excluded, 0/0): judged on the other two -> 1/1
    ({"risk": Ratio(1, 1), "prophylaxis": Ratio(1, 1), "pc6": Ratio()}, {17: Ratio(1, 1)}),
    # nothing counted (not applicable or not yet due) -> the item is not counted at all
    ({"risk": Ratio(), "prophylaxis": Ratio(), "pc6": Ratio()}, {}),
    # a process measure (no item) never enters the figure, done or not
    ({"risk": Ratio(1, 1), "pain_4h": Ratio(0, 1)}, {17: Ratio(1, 1)}),
])
def test_item_ratios_one_result_per_eras_item(elements, expected) -> None:
    items = {"risk": 17, "prophylaxis": 17, "pc6": 17}
    assert item_ratios(elements, items) == expected


def test_patient_compliance_high_line_uses_eras_items() -> None:
    # Items 1 (education: done) and 19 (out of bed: missed); pain_score is a process measure,
    # 3 of its blocks missed. All elements: 1 done of 5 counted = 20 %. ERAS items: 1 of 2 =
    # 50 %: below 70 % either way; with the out-of-bed record the items give 2/2 = 100 % (high)
    # while all elements stay at 2 of 5 = 40 %.
    items = {"education": 1, "out_of_bed": 19}
    by_element = {"education": Ratio(1, 1), "out_of_bed": Ratio(0, 1), "pain_score": Ratio(0, 3)}
    ratios = item_ratios(by_element, items)
    assert sum(ratios.values(), Ratio()) == Ratio(1, 2)
    fixed = item_ratios({**by_element, "out_of_bed": Ratio(1, 1)}, items)
    pc = PatientCompliance("p", Ratio(2, 5), {}, {}, fixed, sum(fixed.values(), Ratio()))
    assert pc.eras == Ratio(2, 2) and pc.headline == Ratio(2, 2) and pc.is_high(0.7)
    assert not PatientCompliance("p", Ratio(2, 5), {}, {}).is_high(0.7)  # no items: overall


def test_cohort_compliance_sums_eras_items_and_counts_high_by_them() -> None:
    a = PatientCompliance("a", Ratio(2, 5), {}, {}, {1: Ratio(1, 1), 19: Ratio(1, 1)}, Ratio(2, 2))
    b = PatientCompliance("b", Ratio(4, 5), {}, {}, {1: Ratio(1, 1), 19: Ratio(0, 1)}, Ratio(1, 2))
    report = cohort_compliance([a, b], high_threshold=0.7)
    assert report.by_item == {1: Ratio(2, 2), 19: Ratio(1, 2)}
    assert report.eras == Ratio(3, 4)
    assert report.overall == Ratio(6, 10)
    assert report.high == Ratio(1, 2)  # a at 100 % of items; b at 50 % (80 % of all elements)


# (elements done, counted, ERAS items done, counted) and outcome values, worked by hand:
# A 3/4 items = 75 % and E 7/10 = 70 % are high (at the 70 % line); B 2/4 and C (no item map:
# 1/2 elements) are lower; D counts nothing and is in neither.
SCORED = (((8, 10, 3, 4), {"los": 3.0, "readmitted": False, "steps": None}),
          ((9, 10, 2, 4), {"los": 5.0, "readmitted": True}),
          ((1, 2, None, None), {"los": 4, "readmitted": None}),
          ((0, 0, 0, 0), {"los": 100.0, "readmitted": True}),
          ((7, 10, 7, 10), {"los": 2.0, "readmitted": True}))


def test_cohort_figures_sum_scores_and_count_the_high_line_by_hand() -> None:
    figures = cohort_figures((s for s, _ in SCORED), high_threshold=0.7)
    assert figures == CohortFigures(Ratio(25, 32), Ratio(12, 18), Ratio(2, 4))
    assert [is_high(s, 0.7) for s, _ in SCORED] == [True, False, False, None, True]
    assert cohort_figures([(1, 2, None, None)], high_threshold=0.7).eras is None


def test_outcome_groups_by_hand() -> None:
    """Outcomes are the first scored patient's names; yes-no ones count events, numbers give
    mean and median; a value not recorded (None or absent) is left out of n."""
    high, lower = outcome_groups(SCORED, 0.7)
    assert (high.patients, lower.patients) == (2, 2)
    assert list(high.stats) == ["los", "readmitted", "steps"]
    assert high.stats["los"] == OutcomeStat("los", False, 2, 2.5, 2.5)
    assert high.stats["readmitted"] == OutcomeStat("readmitted", True, 2, events=1)
    assert high.stats["steps"] == OutcomeStat("steps", False, 0)
    assert lower.stats["los"] == OutcomeStat("los", False, 2, 4.5, 4.5)
    assert lower.stats["readmitted"] == OutcomeStat("readmitted", True, 1, events=1)
    assert lower.stats["readmitted"].rate == 1.0
