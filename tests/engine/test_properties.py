"""Properties of evaluation: deterministic, blind to unrelated facts, stable action keys."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.evaluate import evaluate
from engine.facts import Fact
from tests.engine.helpers import BOOKED, LONDON, SURGERY_END, pathway, patient

CONCEPTS = ["pain_score", "ambulation", "education_delivered", "haemoglobin",
            "tobacco_smoking_status", "urinary_catheter_removed", "pc6_bands_applied"]
hours = st.integers(min_value=-24 * 70, max_value=24 * 10)


@st.composite
def facts(draw: st.DrawFn) -> list[Fact]:
    out = []
    for i in range(draw(st.integers(0, 25))):
        concept = draw(st.sampled_from(CONCEPTS))
        if concept == "tobacco_smoking_status":
            value = draw(st.sampled_from(["current_smoker", "never_smoker", "ex_smoker"]))
        else:
            value = draw(st.one_of(st.none(), st.integers(0, 18)))
        out.append(Fact(concept, SURGERY_END + timedelta(hours=draw(hours)), value=value,
                        source=f"Observation/h{i}"))
    return out


settings.register_profile("engine", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("engine")


@given(facts(), hours)
def test_evaluate_is_deterministic(items: list[Fact], now_h: int) -> None:
    now = SURGERY_END + timedelta(hours=now_h)
    first = evaluate(pathway(), patient(*items), now=now, tz=LONDON)
    again = evaluate(pathway(), patient(*reversed(items)), now=now, tz=LONDON)
    assert first == again


@given(facts(), hours, st.sampled_from(["nausea_score", "diabetes"]), hours)
def test_evaluate_unrelated_fact_changes_nothing(items: list[Fact], now_h: int, concept: str,
                                                 fact_h: int) -> None:
    # nausea_score and diabetes are bound in the terminology but read by no element.
    now = SURGERY_END + timedelta(hours=now_h)
    extra = Fact(concept, SURGERY_END + timedelta(hours=fact_h), value=5, source="Observation/x")
    base = evaluate(pathway(), patient(*items), now=now, tz=LONDON)
    more = evaluate(pathway(), patient(*items, extra), now=now, tz=LONDON)
    assert base == more


@given(facts(), facts(), hours, st.integers(0, 24 * 5))
def test_evaluate_action_keys_stable_as_facts_grow(early: list[Fact], late: list[Fact],
                                                   now_h: int, later_h: int) -> None:
    now = SURGERY_END + timedelta(hours=now_h)
    later = now + timedelta(hours=later_h)
    before = evaluate(pathway(), patient(*early), now=now, tz=LONDON)
    after = evaluate(pathway(), patient(*early, *late), now=later, tz=LONDON)
    keys_after = {a.key for a in after.actions} | {
        o.key for r in after.elements for o in r.occurrences}
    for action in before.actions:
        # A planned action keeps its key; it may only disappear if its element stopped applying.
        element = after.element(action.element_id)
        assert action.key in keys_after or element.occurrences == () or \
            element.status.value == "not-applicable"
    assert before.enrolment_id == after.enrolment_id


def test_evaluate_keys_carry_enrolment_element_occurrence() -> None:
    ev = evaluate(pathway(), patient(), now=BOOKED + timedelta(days=20), tz=LONDON)
    for action in ev.actions:
        assert action.key == f"enr1:{action.element_id}:{action.occurrence}"
