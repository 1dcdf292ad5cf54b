"""Facts dated in the future (EHR clock skew, a typo) count for nothing until their time.

Hand-worked timelines on the test pathway (tests/engine/data/valid/pathway.yaml): surgery
Sat 28 Mar 2026 10:00-15:00 UTC; education opens 6 weeks before the start (Sat 14 Feb 10:00),
is due 7 days before (Sat 21 Mar 10:00) and closes at the start.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from engine.evaluate import evaluate
from engine.facts import Fact
from engine.patientfile import patient_from_json, patient_json
from engine.results import Status
from tests.engine.helpers import BOOKED, LONDON, SURGERY_END, SURGERY_START, pathway, patient

MIN = timedelta(minutes=1)
NOW = datetime(2026, 2, 17, 10, 0, tzinfo=UTC)  # education open since 14 Feb, due 21 Mar
TOLERANCE = 5 * MIN


def _education(at: datetime, status: str | None = "completed") -> Fact:
    # Entered an hour before NOW, whatever date was typed for when it was done.
    return Fact("education_delivered", at, status=status, source="Procedure/edu", recorded=NOW - 60 * MIN)


@pytest.mark.parametrize(("done_at", "expected", "held"), [
    (NOW - 60 * MIN, Status.DONE, ()),                      # in the past: counts
    (NOW + 3 * MIN, Status.DONE, ()),                       # 3 min ahead, within 5 min of skew
    (NOW + 6 * MIN, Status.DUE, ("Procedure/edu",)),        # 6 min ahead: held
    (datetime(2026, 2, 27, 10, 0, tzinfo=UTC), Status.DUE, ("Procedure/edu",)),  # 10 days: a typo
])
def test_education_done_in_the_future_is_held(done_at: datetime, expected: Status, held: tuple) -> None:
    facts = replace(patient(_education(done_at)), future_tolerance=TOLERANCE)
    evaluation = evaluate(pathway(), facts, now=NOW, tz=LONDON)
    assert evaluation.element("education").status is expected
    assert evaluation.future_dated == held
    message = "{} is dated in the future: held until its time (EHR clock or typing error?)"
    assert [w for w in evaluation.warnings if "dated in the future" in w] == [message.format(s) for s in held]


def test_held_fact_counts_once_its_time_comes() -> None:
    """Typed as 27 Feb 10:00: held on 17 Feb, done (on time, before 21 Mar) from 27 Feb 09:55."""
    facts = replace(patient(_education(datetime(2026, 2, 27, 10, 0, tzinfo=UTC))), future_tolerance=TOLERANCE)
    before = evaluate(pathway(), facts, now=datetime(2026, 2, 27, 9, 54, tzinfo=UTC), tz=LONDON)
    after = evaluate(pathway(), facts, now=datetime(2026, 2, 27, 9, 55, tzinfo=UTC), tz=LONDON)
    assert before.element("education").status is Status.DUE
    assert (after.element("education").status, after.future_dated) == (Status.DONE, ())


def test_a_plan_dated_in_the_future_is_not_held() -> None:
    """A booked surgery (no status saying it happened) is in the future by nature: it anchors."""
    facts = replace(patient(), future_tolerance=TOLERANCE)
    evaluation = evaluate(pathway(), facts, now=NOW, tz=LONDON)
    assert evaluation.anchors["surgery_start"] == SURGERY_START
    assert evaluation.future_dated == ()


def test_a_completed_surgery_dated_tomorrow_moves_no_anchor() -> None:
    """The same surgery recorded as `completed` on 27 Mar (the day before it): not an anchor yet."""
    done = Fact("spinal_fusion", SURGERY_START, SURGERY_END, status="completed", source="Procedure/surg",
                recorded=BOOKED)
    facts = replace(patient(), facts=(done,), future_tolerance=TOLERANCE)
    evaluation = evaluate(pathway(), facts, now=SURGERY_START - timedelta(days=1), tz=LONDON)
    assert evaluation.anchors["surgery_start"] is None and evaluation.anchors["surgery_end"] is None
    assert evaluation.future_dated == ("Procedure/surg",)
    on_the_day = evaluate(pathway(), facts, now=SURGERY_END + 60 * MIN, tz=LONDON)
    assert on_the_day.anchors["surgery_end"] == SURGERY_END and on_the_day.future_dated == ()


def test_patient_file_keeps_the_tolerance() -> None:
    """A stored patient file (what `eras audit recompute` re-evaluates) uses the same facts as the
    apply that stored it: 3 min ahead counts within 5 min of skew, after the round trip too."""
    facts = replace(patient(_education(NOW + 3 * MIN)), future_tolerance=TOLERANCE)
    stored = patient_from_json(patient_json(facts))
    assert stored.future_tolerance == TOLERANCE
    assert evaluate(pathway(), stored, now=NOW, tz=LONDON).element("education").status is Status.DONE
    assert "futureTolerance" not in patient_json(replace(facts, future_tolerance=timedelta(0)))
