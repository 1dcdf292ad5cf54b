"""Evaluation: statuses by time, applicability, evidence windows, recurrence, triggers, declines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import EvaluationError
from engine.evaluate import evaluate
from engine.facts import Fact, TaskState
from engine.results import Status
from tests.engine.helpers import (
    BOOKED,
    LONDON,
    SURGERY_END,
    SURGERY_START,
    at,
    pathway,
    patient,
)

EDU_OPENS = SURGERY_START - timedelta(weeks=6)
EDU_DUE = SURGERY_START - timedelta(days=7)


@pytest.mark.parametrize(("now", "evidence_at", "expected"), [
    (EDU_OPENS - timedelta(days=1), None, Status.UPCOMING),
    (EDU_OPENS + timedelta(days=1), None, Status.DUE),
    (EDU_DUE + timedelta(hours=1), None, Status.OVERDUE),
    (SURGERY_START + timedelta(hours=1), None, Status.MISSED),
    (EDU_DUE, EDU_OPENS + timedelta(days=2), Status.DONE),
    # evidence before the window opens or after its phase ends does not count
    # (done late needs the record before the phase ends: tests/engine/test_timeliness.py)
    (SURGERY_START + timedelta(days=1), EDU_OPENS - timedelta(days=1), Status.MISSED),
    (SURGERY_START + timedelta(days=2), SURGERY_START + timedelta(days=1), Status.MISSED),
    # evidence recorded later than `now` is not known yet
    (EDU_OPENS + timedelta(days=3), EDU_OPENS + timedelta(days=4), Status.DUE),
])
def test_evaluate_education_status_by_time(now, evidence_at, expected) -> None:
    facts = () if evidence_at is None else (
        Fact("education_delivered", evidence_at, source="Procedure/edu"),)
    result = evaluate(pathway(), patient(*facts), now=now, tz=LONDON).element("education")
    assert result.status is expected


def _smoking(value: str) -> Fact:
    return Fact("tobacco_smoking_status", BOOKED, value=value, source="Observation/smk")


def _hb(value: float) -> Fact:
    return Fact("haemoglobin", BOOKED, value=value, unit="g/dL", source="Observation/hb")


@pytest.mark.parametrize(("element", "facts", "sex", "params", "applies"), [
    ("smoking_cessation", [_smoking("current_smoker")], "male", {}, True),
    ("smoking_cessation", [_smoking("ex_smoker")], "male", {}, False),
    ("smoking_cessation", [], "male", {}, False),
    ("smoking_cessation", [_smoking("current_smoker"), Fact(
        "tobacco_smoking_status", BOOKED + timedelta(days=10), value="ex_smoker")], "male", {}, False),
    ("iron", [_hb(11.5)], "female", {}, True),
    ("iron", [_hb(12.5)], "female", {}, False),
    ("iron", [_hb(12.5)], "male", {}, True),
    ("iron", [_hb(13.5)], "male", {}, False),
    ("iron", [], "female", {}, False),
    ("supervised_exercise_decompression", [], "male", {"procedure_type": "decompression"}, True),
    ("supervised_exercise_decompression", [], "male", {}, False),
    ("pc6_bands", [], "female", {}, True),  # female + non-smoker = Apfel 2
    ("pc6_bands", [_smoking("current_smoker")], "female", {}, False),  # Apfel 1
])
def test_evaluate_applicability(element, facts, sex, params, applies) -> None:
    ev = evaluate(pathway(), patient(*facts, sex=sex, parameters=params),
                  now=BOOKED + timedelta(days=20), tz=LONDON)
    assert (ev.element(element).status is not Status.NOT_APPLICABLE) is applies


@pytest.mark.parametrize(("sex", "facts", "points"), [
    ("male", [_smoking("current_smoker")], 0),
    ("male", [], 1),
    ("female", [_smoking("current_smoker")], 1),
    ("female", [], 2),
    ("female", [Fact("ponv_history", BOOKED - timedelta(days=900))], 3),
    ("female", [Fact("ponv_history", BOOKED), Fact("opioid_planned", BOOKED + timedelta(days=1))], 4),
    ("male", [_smoking("current_smoker"), Fact("opioid_planned", BOOKED)], 1),
])
def test_evaluate_apfel_points(sex, facts, points) -> None:
    ev = evaluate(pathway(), patient(*facts, sex=sex), now=SURGERY_START, tz=LONDON)
    assert ev.variables["apfel"] == points


def test_evaluate_local_days_across_dst_change() -> None:
    # Surgery ends Saturday 28 March 2026; BST starts at 01:00 UTC on Sunday 29 March.
    walk = evaluate(pathway(), patient(), now=at(24 * 5), tz=LONDON).element("walk")
    windows = [(o.opens, o.due, o.closes) for o in walk.occurrences]
    assert windows == [
        (datetime(2026, 3, 29, 0, 0, tzinfo=UTC),    # POD1 00:00 GMT
         datetime(2026, 3, 29, 19, 0, tzinfo=UTC),   # POD1 20:00 BST
         datetime(2026, 3, 29, 23, 0, tzinfo=UTC)),  # POD2 00:00 BST
        (datetime(2026, 3, 29, 23, 0, tzinfo=UTC), datetime(2026, 3, 30, 19, 0, tzinfo=UTC),
         datetime(2026, 3, 30, 23, 0, tzinfo=UTC)),
        (datetime(2026, 3, 30, 23, 0, tzinfo=UTC), datetime(2026, 3, 31, 19, 0, tzinfo=UTC),
         datetime(2026, 3, 31, 23, 0, tzinfo=UTC)),
    ]


def test_evaluate_exact_hours_across_dst_change() -> None:
    # 4-hourly pain scores stay 4 real hours apart through the DST change.
    pain = evaluate(pathway(), patient(), now=at(24 * 5), tz=LONDON).element("pain_score")
    opens = [o.opens for o in pain.occurrences]
    assert all(b - a == timedelta(hours=4) for a, b in zip(opens, opens[1:], strict=False))
    # until 'day 3 end' = 1 April 00:00 BST = 31 March 23:00 UTC
    assert opens[-1] < datetime(2026, 3, 31, 23, tzinfo=UTC) <= opens[-1] + timedelta(hours=4)


def test_evaluate_recurrence_stops_at_the_first_future_occurrence() -> None:
    walk = evaluate(pathway(), patient(), now=at(1), tz=LONDON).element("walk")
    assert [(o.occurrence, o.status) for o in walk.occurrences] == [("0", Status.UPCOMING)]


def test_evaluate_recurrence_partly_done() -> None:
    walks = [Fact("ambulation", datetime(2026, 3, 29, h, tzinfo=UTC), source=f"Procedure/w{h}")
             for h in (9, 13, 17)]
    walks.append(Fact("ambulation", datetime(2026, 3, 30, 10, tzinfo=UTC), source="Procedure/w2"))
    walk = evaluate(pathway(), patient(*walks), now=datetime(2026, 4, 2, tzinfo=UTC),
                    tz=LONDON).element("walk")
    assert [o.status for o in walk.occurrences] == [Status.DONE, Status.MISSED, Status.MISSED]
    assert (walk.occurrences_done, walk.occurrences_counted) == (1, 3)
    assert walk.status is Status.MISSED and walk.counts == "not-done"


def test_evaluate_trigger_opens_reassessment_due_within_an_hour() -> None:
    high = Fact("pain_score", at(5), value=7, source="Observation/nrs7")
    low = Fact("pain_score", at(2), value=3, source="Observation/nrs3")
    ev = evaluate(pathway(), patient(high, low), now=at(5.25), tz=LONDON)
    reassess = ev.element("pain_reassessment")
    assert [o.occurrence for o in reassess.occurrences] == ["t:Observation/nrs7"]
    occ = reassess.occurrences[0]
    assert (occ.status, occ.due) == (Status.DUE, at(6))
    action = next(a for a in ev.actions if a.element_id == "pain_reassessment")
    assert action.key == "enr1:pain_reassessment:t:Observation/nrs7"
    assert action.escalations == ((at(6.5), "charge_nurse"),)
    assert action.remind_at == at(5.75)


def test_evaluate_trigger_needs_a_later_score() -> None:
    high = Fact("pain_score", at(5), value=7, source="Observation/nrs7")
    later = Fact("pain_score", at(5.5), value=3, source="Observation/nrs3")
    only_trigger = evaluate(pathway(), patient(high), now=at(8), tz=LONDON)
    assert only_trigger.element("pain_reassessment").status is Status.MISSED
    with_later = evaluate(pathway(), patient(high, later), now=at(8), tz=LONDON)
    assert with_later.element("pain_reassessment").status is Status.DONE


def test_evaluate_no_trigger_is_not_applicable() -> None:
    ev = evaluate(pathway(), patient(Fact("pain_score", at(2), value=2)), now=at(3), tz=LONDON)
    assert ev.element("pain_reassessment").status is Status.NOT_APPLICABLE


@pytest.mark.parametrize(("reason", "status", "counts"), [
    ("patient-refused", Status.DECLINED, "not-done"),
    ("deferred-by-clinician", Status.DECLINED, "not-done"),
    ("contraindicated", Status.DECLINED, None),
    ("no-longer-applies", Status.OVERDUE, "not-done"),  # our own cancellations are not declines
])
def test_evaluate_decline_reason_decides_counting(reason, status, counts) -> None:
    task = TaskState("enr1:out_of_bed:0", "cancelled", at=at(1), reason=reason)
    ev = evaluate(pathway(), patient(tasks=(task,)), now=at(4.5), tz=LONDON)
    result = ev.element("out_of_bed")
    assert (result.status, result.counts) == (status, counts)


def test_evaluate_completed_task_counts_only_where_element_allows() -> None:
    smoker = Fact("tobacco_smoking_status", BOOKED, value="current_smoker")
    done = (TaskState("enr1:smoking_cessation:0", "completed", at=BOOKED + timedelta(days=5)),
            TaskState("enr1:education:0", "completed", at=BOOKED + timedelta(days=5)))
    ev = evaluate(pathway(), patient(smoker, tasks=done), now=SURGERY_START, tz=LONDON)
    assert ev.element("smoking_cessation").status is Status.DONE
    assert ev.element("education").status is Status.MISSED  # needs the record's evidence


def test_evaluate_post_op_elements_wait_for_surgery_end() -> None:
    facts = patient()
    in_theatre = SURGERY_START + timedelta(hours=1)
    ev = evaluate(pathway(), facts, now=in_theatre, tz=LONDON)
    assert ev.anchors["surgery_end"] is None
    assert ev.element("out_of_bed").status is Status.UPCOMING
    assert ev.element("out_of_bed").occurrences == ()


def test_evaluate_out_of_bed_escalates_in_two_levels() -> None:
    ev = evaluate(pathway(), patient(), now=at(4.5), tz=LONDON)
    action = next(a for a in ev.actions if a.element_id == "out_of_bed")
    assert action.status is Status.OVERDUE
    assert action.escalations == ((at(5), "charge_nurse"), (at(7), "ward_manager"))
    assert ev.next_change_at == at(5)


def test_evaluate_recurring_actions_are_open_ones_plus_the_next() -> None:
    ev = evaluate(pathway(), patient(), now=at(9), tz=LONDON)
    keys = [a.occurrence for a in ev.actions if a.element_id == "pain_score"]
    assert keys == ["0", "1", "2", "3"]  # 0-1 missed, 2 due (8-12 h), 3 next


def test_evaluate_rejects_naive_now() -> None:
    with pytest.raises(EvaluationError, match="timezone-aware"):
        evaluate(pathway(), patient(), now=datetime(2026, 3, 28))


def test_evaluate_age_in_local_years() -> None:
    ev = evaluate(pathway(), patient(), now=SURGERY_END, tz=LONDON)
    assert ev.variables["age"] == 65
    assert ev.anchors["surgery_end"] == SURGERY_END


def test_evaluate_fact_of_wrong_type_proves_nothing_and_is_reported() -> None:
    text_score = Fact("pain_score", at(5), value="severe", source="Observation/txt")
    ev = evaluate(pathway(), patient(text_score), now=at(6), tz=LONDON)
    assert ev.element("pain_reassessment").status is Status.NOT_APPLICABLE
    assert ev.warnings == ("'value >= 4' not evaluable on Observation/txt",)


def test_evaluate_condition_on_wrong_type_names_the_condition() -> None:
    text_hb = Fact("haemoglobin", BOOKED, value="low", source="Observation/hb")
    with pytest.raises(EvaluationError, match="haemoglobin.last"):
        evaluate(pathway(), patient(text_hb), now=SURGERY_START, tz=LONDON)
