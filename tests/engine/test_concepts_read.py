"""`concepts_read`: an evaluation of some elements, from only the facts of the concepts they (and
what every element shares) read, gives the results, anchors and variables of one from every fact.
The recompute decodes no other facts of an episode re-evaluated in its changed elements."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from bench.synthetic import synthetic_patient
from engine.evaluate import evaluate
from engine.facts import PatientFacts
from engine.patientfile import patient_from_json, patient_json
from engine.plan import concepts_read, plan_of
from tests.audit.cohort import LONDON, gold_cohort, lumbar


def _patients() -> list[tuple[PatientFacts, object]]:
    out = [(c.facts, c.evaluation.now) for c in gold_cohort()]
    rng = random.Random(21)
    out += [synthetic_patient(i, rng) for i in range(20)]
    return out


PATIENTS = _patients()
ELEMENTS = [c.id for c in plan_of(lumbar()).elements]


@pytest.mark.parametrize("element", ELEMENTS)
def test_concepts_read_one_element_evaluates_as_from_every_fact(element: str) -> None:
    pathway, only = lumbar(), {element}
    concepts = concepts_read(pathway, only)
    left_out = 0
    for facts, now in PATIENTS:
        some = patient_from_json(patient_json(facts), concepts)
        left_out += len(facts.facts) - len(some.facts)
        whole = evaluate(pathway, facts, now=now, tz=LONDON, only=only)  # type: ignore[arg-type]
        part = evaluate(pathway, some, now=now, tz=LONDON, only=only)  # type: ignore[arg-type]
        assert (part.elements, part.anchors, part.variables) == (whole.elements, whole.anchors,
                                                                 whole.variables), facts.enrolment_id
    assert left_out  # the check would be empty if no fact were ever left out


def test_concepts_read_holds_what_the_elements_read() -> None:
    pathway = lumbar()
    shared = concepts_read(pathway, set())
    catheter = concepts_read(pathway, {"urinary_catheter_removal"})
    # applies_when reads these two; the anchors read the surgery
    assert {"urinary_catheter_inserted", "urinary_catheter_removed"} <= catheter - shared
    assert "spine_surgery" in shared
    assert concepts_read(pathway) >= catheter | concepts_read(pathway, {"drain_removal"})


def test_patient_from_json_concepts_keeps_only_theirs_and_refuses_a_fact_without_one() -> None:
    facts, _ = synthetic_patient(0, random.Random(1))
    data = patient_json(replace(facts, facts=facts.facts[:3]))
    kept = patient_from_json(data, {facts.facts[0].concept})
    assert {f.concept for f in kept.facts} == {facts.facts[0].concept}
    data["facts"].append({"time": "2025-01-01T00:00:00Z"})
    with pytest.raises(Exception, match="missing 'concept'"):
        patient_from_json(data, {facts.facts[0].concept})
