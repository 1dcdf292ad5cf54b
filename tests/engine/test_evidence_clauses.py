"""evidence.also: an occurrence is done only when the main evidence and every clause hold
(done late when one of them is only found after its window)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.evaluate import evaluate
from engine.facts import Fact
from engine.loader import load_pathway
from engine.model import Pathway
from engine.plan import concepts_used
from engine.results import Status
from tests.engine.helpers import DATA, SURGERY_END, at, patient

# Walked within 6 h of surgery end AND a pain score within 2 h of the end, each in its window.
PATHWAY = """
id: clauses
version: 1
title: Clauses
source: {guideline: test}
enrols_on: [spinal_fusion]
anchors:
  surgery_end: {concept: spinal_fusion, at: end}
elements:
  - id: walk_and_score
    title: Walked, and pain scored early
    phase: post-op
    category: mobilisation
    source: {guideline: test}
    window: {anchor: surgery_end, opens: "0", closes: 6h}
    evidence:
      concepts: [ambulation]
      also:
        - concepts: [pain_score]
          where: "value >= 0"
          within: {anchor: surgery_end, opens: "0", closes: 2h}
"""


@pytest.fixture(scope="module")
def clauses(tmp_path_factory: pytest.TempPathFactory) -> Pathway:
    path: Path = tmp_path_factory.mktemp("p") / "clauses.yaml"
    path.write_text(PATHWAY)
    return load_pathway(path, DATA / "terms.yaml")


@pytest.mark.parametrize(("walk", "score", "status", "done_at"), [
    (3, 1, Status.DONE, 3),         # both: done when the later of them is recorded
    (1, 1.5, Status.DONE, 1.5),
    (3, None, Status.MISSED, None),  # no score: the clause fails
    # After a window, before the phase ends (post-op: discharge, not known here), proof is
    # done late (clin-engine), for a clause as for the main evidence: never compliant.
    (3, 2.5, Status.DONE_LATE, 3),     # score after its own 2 h window; the walk is later
    (6.5, 1, Status.DONE_LATE, 6.5),   # walk after the 6 h window, score in time
    (6.5, None, Status.MISSED, None),  # late walk, no score: still not proven at all
    (None, 1, Status.MISSED, None),    # no walk: the main evidence fails
])
def test_also_clause_must_hold_in_its_own_window(clauses: Pathway, walk: float | None,
                                                 score: float | None, status: Status,
                                                 done_at: float | None) -> None:
    facts = [] if walk is None else [Fact("ambulation", at(walk))]
    if score is not None:
        facts.append(Fact("pain_score", at(score), value=2))
    result = evaluate(clauses, patient(*facts), now=SURGERY_END + timedelta(hours=7)).element(
        "walk_and_score")
    assert result.status is status
    assert result.occurrences[0].done_at == (None if done_at is None else at(done_at))


def test_also_clause_concepts_are_read(clauses: Pathway) -> None:
    assert {"ambulation", "pain_score"} <= concepts_used(clauses)
