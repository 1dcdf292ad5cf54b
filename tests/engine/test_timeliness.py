"""Timeliness: a timed item done after its window closes is `done-late`, never compliant.

Hand-worked timelines on the test pathway (tests/engine/data/valid/pathway.yaml), in
Europe/London. Surgery 13:00-17:00 on Saturday 28 March 2026 (GMT, so local = UTC); British
Summer Time starts at 01:00 UTC on Sunday 29 March, so POD1 local times are UTC + 1 h.

- out_of_bed: {anchor: surgery_end, opens: "0", due: 4h, closes: 6h} -> open 17:00, due 21:00,
  closes 23:00 on POD0 (the clinical target: out of bed 4-6 h after surgery end).
- walk: POD1..POD3, each local day its own occurrence needing 3 ambulation records.
- pain_score: every 4 h from surgery end, each block [17:00+4i, 21:00+4i].
- pain_reassessment: triggered by NRS >= 4, closes 2 h after the trigger.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from engine.compliance import Ratio, element_ratio
from engine.evaluate import evaluate
from engine.facts import Fact, PatientFacts, TaskState
from engine.results import Status
from tests.engine.helpers import BOOKED, LONDON, pathway

START = datetime(2026, 3, 28, 13, 0, tzinfo=UTC)
END = datetime(2026, 3, 28, 17, 0, tzinfo=UTC)        # POD0 17:00 local (GMT)
POD1_11_LOCAL = datetime(2026, 3, 29, 10, 0, tzinfo=UTC)  # POD1 11:00 BST = 10:00 UTC
H = timedelta(hours=1)
MIN = timedelta(minutes=1)


def _patient(*facts: Fact, tasks: tuple[TaskState, ...] = ()) -> PatientFacts:
    surgery = Fact("spinal_fusion", START, END, source="Procedure/surg", recorded=BOOKED)
    return PatientFacts(patient_id="p1", enrolment_id="enr1", sex="female", enrolled_at=BOOKED,
                        facts=(surgery, *facts), tasks=tasks)


def _up(when: datetime, n: int = 0) -> Fact:
    return Fact("ambulation", when, source=f"Procedure/amb{n}")


def _task(status: str, when: datetime, reason: str | None = None) -> TaskState:
    return TaskState("enr1:out_of_bed:0", status, at=when, reason=reason, source="Task/oob")


OOB_CASES = [
    # (label, facts, tasks, now, status, done_at, counts)
    # up at 21:00 = end + 4 h, inside [17:00, 23:00] -> done, compliant
    ("up at 4 h", [_up(END + 4 * H)], (), POD1_11_LOCAL + H, Status.DONE, END + 4 * H, "done"),
    # up at 23:00 = end + 6 h exactly: the window is closed-ended -> done
    ("up at 6 h", [_up(END + 6 * H)], (), POD1_11_LOCAL + H, Status.DONE, END + 6 * H, "done"),
    # up at 23:01, one minute after the window closed -> done late, not compliant
    ("up at 6 h 1 min", [_up(END + 6 * H + MIN)], (), POD1_11_LOCAL + H, Status.DONE_LATE,
     END + 6 * H + MIN, "not-done"),
    # first out of bed POD1 11:00 BST (10:00 UTC = end + 17 h) -> done late, not compliant
    ("first up POD1 11:00", [_up(POD1_11_LOCAL)], (), POD1_11_LOCAL + H, Status.DONE_LATE,
     POD1_11_LOCAL, "not-done"),
    # the same record, looked at before it was made (POD1 09:00 BST): nothing yet -> missed
    ("POD1 before the record", [_up(POD1_11_LOCAL)], (), POD1_11_LOCAL - 2 * H, Status.MISSED,
     None, "not-done"),
    # nothing at 22:00 (past due 21:00, before close 23:00) -> overdue
    ("nothing at 22:00", [], (), END + 5 * H, Status.OVERDUE, None, "not-done"),
    # nothing by POD1 12:00 -> missed (missing data)
    ("nothing", [], (), POD1_11_LOCAL + H, Status.MISSED, None, "not-done"),
    # refused at 20:00, up next morning: the documented decline is what happened in the window
    ("refused, then up POD1", [_up(POD1_11_LOCAL)],
     (_task("cancelled", END + 3 * H, "patient-refused"),), POD1_11_LOCAL + H, Status.DECLINED,
     None, "not-done"),
]


@pytest.mark.parametrize(("label", "facts", "tasks", "now", "status", "done_at", "counts"),
                         OOB_CASES, ids=[c[0] for c in OOB_CASES])
def test_timeliness_out_of_bed(label, facts, tasks, now, status, done_at, counts) -> None:
    result = evaluate(pathway(), _patient(*facts, tasks=tasks), now=now, tz=LONDON).element(
        "out_of_bed")
    occ = result.occurrences[0]
    assert (occ.status, occ.done_at, occ.counts) == (status, done_at, counts)
    assert (result.status, result.counts) == (status, counts)
    assert element_ratio(result) == Ratio(1 if counts == "done" else 0, 1)


def test_timeliness_done_late_keeps_its_evidence() -> None:
    ev = evaluate(pathway(), _patient(_up(POD1_11_LOCAL, 7)), now=POD1_11_LOCAL + H, tz=LONDON)
    assert ev.element("out_of_bed").occurrences[0].evidence == ("Procedure/amb7",)
    action = next(a for a in ev.actions if a.element_id == "out_of_bed")
    assert (action.status, action.done_at) == (Status.DONE_LATE, POD1_11_LOCAL)


def test_timeliness_not_late_once_the_phase_is_over() -> None:
    # education (pre-admission) closes at surgery start 13:00, which also ends its phase
    # (audit.phase_ends default): a record on POD1 is not late education, it is missing data.
    edu = Fact("education_delivered", POD1_11_LOCAL, source="Procedure/edu")
    result = evaluate(pathway(), _patient(edu), now=POD1_11_LOCAL + H, tz=LONDON).element(
        "education")
    assert (result.status, result.counts) == (Status.MISSED, "not-done")


SMOKER = Fact("tobacco_smoking_status", BOOKED, value="current_smoker", source="Observation/smk")


@pytest.mark.parametrize(("completed", "status", "counts"), [
    # smoking_cessation (task: true) closes at surgery start 13:00 on 28 March.
    (START - timedelta(days=30), Status.DONE, "done"),      # completed 30 days before: in window
    (START, Status.DONE, "done"),                            # completed at the close: in window
    (START + 2 * H, Status.DONE_LATE, "not-done"),           # completed in the EHR 2 h after it
])
def test_timeliness_task_completion_time(completed, status, counts) -> None:
    # The Task's completion time (from the EHR) decides, not whether it is completed at all.
    task = TaskState("enr1:smoking_cessation:0", "completed", at=completed, source="Task/smk")
    result = evaluate(pathway(), _patient(SMOKER, tasks=(task,)), now=START + 3 * H,
                      tz=LONDON).element("smoking_cessation")
    occ = result.occurrences[0]
    assert (occ.status, occ.done_at, occ.counts, occ.evidence) == (status, completed, counts,
                                                                   ("Task/smk",))


def _day(n: int, hour: int) -> datetime:
    """Local hour on POD n; from POD1 on London is on BST (UTC + 1 h)."""
    return datetime(2026, 3, 28 + n, hour, 0, tzinfo=UTC) - (H if n >= 1 else timedelta(0))


def test_timeliness_recurring_occurrence_not_late_from_the_next_ones_records() -> None:
    # POD1 walks at 09:00 and 13:00 (2 of 3) -> POD1 not done; POD2 walks at 09, 13, 17 -> done.
    # POD2's walks belong to POD2's occurrence, so POD1 is missed, not done late.
    walks = [_up(_day(1, 9), 1), _up(_day(1, 13), 2),
             _up(_day(2, 9), 3), _up(_day(2, 13), 4), _up(_day(2, 17), 5)]
    result = evaluate(pathway(), _patient(*walks), now=_day(3, 8), tz=LONDON).element("walk")
    assert [o.status for o in result.occurrences[:2]] == [Status.MISSED, Status.DONE]


def test_timeliness_pain_block_not_late_from_the_next_block() -> None:
    # Block 0 is [17:00, 21:00]: no score; block 1 [21:00, 01:00] has a score at 22:00 (NRS 2).
    # Block 0 is missed (missing data), block 1 done.
    score = Fact("pain_score", END + 5 * H, value=2, source="Observation/ps1")
    result = evaluate(pathway(), _patient(score), now=END + 10 * H, tz=LONDON).element("pain_score")
    assert [o.status for o in result.occurrences[:2]] == [Status.MISSED, Status.DONE]


@pytest.mark.parametrize(("after", "status", "counts"), [
    (40 * MIN, Status.DONE, "done"),           # reassessed 40 min after NRS 6: inside 2 h
    (2 * H, Status.DONE, "done"),              # exactly at the close
    (3 * H, Status.DONE_LATE, "not-done"),     # at 3 h: a late reassessment, not a compliant one
])
def test_timeliness_triggered_reassessment(after, status, counts) -> None:
    # NRS 6 at 20:00 (end + 3 h) opens a window [20:00, 22:00].
    trigger = Fact("pain_score", END + 3 * H, value=6, source="Observation/ps6")
    again = Fact("pain_score", END + 3 * H + after, value=3, source="Observation/ps3")
    result = evaluate(pathway(), _patient(trigger, again), now=END + 8 * H,
                      tz=LONDON).element("pain_reassessment")
    assert (result.occurrences[0].status, result.counts) == (status, counts)


# Documented as not done in the EHR (a Procedure with status not-done): EIAS "not done", kept
# apart from missing data (nothing documented). out_of_bed closes at 23:00 on POD0.
NOT_DONE = Fact("ambulation", END + 2 * H, status="not-done", source="Procedure/nd",
                attrs={"status_reason": "183944003"})


@pytest.mark.parametrize(("facts", "status", "reason", "counts"), [
    # not done documented at 19:00, nothing else: documented not done, not missing data
    ([], Status.DECLINED, "documented-not-done", "not-done"),
    # documented not done at 19:00, then up at 22:00 inside the window: done
    ([_up(END + 5 * H)], Status.DONE, None, "done"),
])
def test_documented_not_done_is_not_missing_data(facts, status, reason, counts) -> None:
    patient = replace(_patient(*facts), not_done=(NOT_DONE,))
    occ = evaluate(pathway(), patient, now=POD1_11_LOCAL + H, tz=LONDON).element(
        "out_of_bed").occurrences[0]
    assert (occ.status, occ.decline_reason, occ.counts) == (status, reason, counts)
    if status is Status.DECLINED:
        assert occ.evidence == ("Procedure/nd",)


def test_documented_not_done_facts_prove_nothing() -> None:
    # A not-done record is never evidence, anchor or condition input: only "documented not done".
    patient = replace(_patient(), not_done=(replace(NOT_DONE, time=END + 4 * H),))
    ev = evaluate(pathway(), patient, now=END + 5 * H, tz=LONDON)
    assert ev.element("walk").occurrences == () or ev.element("walk").status is not Status.DONE
    assert ev.element("out_of_bed").occurrences[0].status is Status.DECLINED
