"""Compliance arithmetic: done ÷ counted, with not-applicable and not-yet-due excluded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.compliance import Ratio, cohort_compliance, element_ratio, patient_compliance
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
