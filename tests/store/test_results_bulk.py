"""`record_many_results` (the recompute's bulk write) stores exactly what `record_element_results`
(apply's write, one episode at a time) stores: every column of every element result and episode row,
through inserts, changed and unchanged results, and elements no longer planned."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, text
from sqlmodel import Session, col, select

from engine.audit import AuditCase
from engine.evaluate import evaluate
from engine.results import Evaluation
from store.models import AuditEpisode, ElementResultRow, Enrolment
from store.results import (
    RecordedEpisode,
    _values,
    episode_attributes,
    record_element_results,
    record_many_results,
    result_digest,
)
from tests.audit.cohort import LONDON, gold_cohort, lumbar

Snapshot = dict[tuple[int, str], dict[str, Any]]


def _enrol(db: Session, case: AuditCase, tag: str) -> str:
    ev = case.evaluation
    row = Enrolment(patient_ref=f"Patient/{ev.patient_id}-{tag}", pathway_id="lumbar_fusion",
                    pathway_version=1, status="active", enrolled_at=ev.now, enrolled_by="test",
                    updated_at=ev.now)
    db.add(row)
    db.flush()
    return row.id


def _rounds(cases: tuple[AuditCase, ...]) -> list[list[Evaluation]]:
    """Three evaluations of each episode, one per round: mid-stay (many upcoming and due), at the
    audit instant (all windows closed), then with a third of the elements dropped (no longer planned)
    or, for every other episode, mid-stay again (changed back)."""
    rounds: list[list[Evaluation]] = [[], [], []]
    for i, c in enumerate(cases):
        start = c.evaluation.anchors.get("surgery_start") or c.evaluation.now
        rounds[0].append(evaluate(lumbar(), c.facts, now=start + timedelta(days=1), tz=LONDON))
        rounds[1].append(c.evaluation)
        els = c.evaluation.elements
        rounds[2].append(rounds[0][-1] if i % 2 else
                         type(c.evaluation)(**{**c.evaluation.__dict__, "elements": els[:len(els) * 2 // 3]}))
    return rounds


def _snapshot(db: Session, ids: list[str]) -> Snapshot:
    """Every stored column of the episodes' rows, keyed by the episode's position in `ids`: as the
    models read them, and as the database holds them (SQLite: the very text of instants and JSON)."""
    db.flush()
    db.expire_all()
    where = {eid: i for i, eid in enumerate(ids)}
    out: Snapshot = {}
    raw = text("SELECT * FROM element_result WHERE enrolment_id IN :ids").bindparams(
        bindparam("ids", expanding=True))
    for r in db.connection().execute(raw, {"ids": ids}).mappings():
        out[(where[r["enrolment_id"]], f"raw {r['element_id']}")] = {**r, "enrolment_id": None}
    for r in db.exec(select(ElementResultRow).where(col(ElementResultRow.enrolment_id).in_(ids))):
        out[(where[r.enrolment_id], r.element_id)] = {**r.model_dump(), "enrolment_id": None}
    for e in db.exec(select(AuditEpisode).where(col(AuditEpisode.enrolment_id).in_(ids))):
        out[(where[e.enrolment_id], "")] = {**e.model_dump(), "enrolment_id": None}
    return out


def test_bulk_write_stores_what_one_episode_at_a_time_stores(db: Session) -> None:
    cases = gold_cohort()
    one_by_one = [_enrol(db, c, "single") for c in cases]
    bulk = [_enrol(db, c, "bulk") for c in cases]
    for n, evaluations in enumerate(_rounds(cases)):
        at = cases[0].evaluation.now + timedelta(hours=n)  # when each round wrote
        batch = []
        for c, ev, single, many in zip(cases, evaluations, one_by_one, bulk, strict=True):
            attrs = episode_attributes(lumbar(), ev, c.facts, ward=f"W{n}",
                                       surgeon=c.attributes.get("surgeon"))
            record_element_results(session=db, enrolment_id=single, evaluation=ev, attributes=attrs, at=at)
            batch.append(RecordedEpisode(many, ev, attrs, at))
        record_many_results(session=db, episodes=batch)
        expected, got = _snapshot(db, one_by_one), _snapshot(db, bulk)
        assert got == expected, f"round {n}"
    # The rounds did insert, change, keep and drop results: the comparison covered each case.
    results = {key: row for key, row in expected.items() if key[1] and not key[1].startswith("raw ")}
    assert len({row["evaluated_at"] for row in results.values()}) == 3
    assert len(results) < sum(len(c.evaluation.elements) for c in cases)


def _stored_results(db: Session, ids: list[str]) -> dict[tuple[int, str], ElementResultRow]:
    db.flush()
    db.expire_all()
    where = {eid: i for i, eid in enumerate(ids)}
    return {(where[r.enrolment_id], r.element_id): r
            for r in db.exec(select(ElementResultRow).where(col(ElementResultRow.enrolment_id).in_(ids)))}


@pytest.mark.parametrize("digests", ["kept", "unknown"])
def test_results_rewritten_exactly_when_their_values_change(db: Session, digests: str) -> None:
    """After each round every stored result holds its evaluation's values, and a result is
    rewritten (evaluated_at moves) exactly when those values changed: told from the digests, or,
    for results stored without one (before migration 0012), from the values themselves, which
    then gain their digest without being rewritten."""
    cases = gold_cohort()
    ids = [_enrol(db, c, "d") for c in cases]
    before: dict[tuple[int, str], ElementResultRow] = {}
    for n, evaluations in enumerate(_rounds(cases)):
        if digests == "unknown":
            db.execute(text("UPDATE element_result SET digest = NULL"))
        at = cases[0].evaluation.now + timedelta(hours=n)
        record_many_results(session=db, episodes=[
            RecordedEpisode(eid, ev, episode_attributes(lumbar(), ev, c.facts, ward=None), at)
            for c, ev, eid in zip(cases, evaluations, ids, strict=True)])
        stored = _stored_results(db, ids)
        expected = {(i, r.element_id): _values(r) for i, ev in enumerate(evaluations) for r in ev.elements}
        assert {k: r.model_dump(exclude={"enrolment_id", "element_id", "evaluated_at"})
                for k, r in stored.items()} == {k: {**v, "digest": result_digest(v)}
                                                for k, v in expected.items()}
        for key, row in stored.items():
            old = before.get(key)
            same = old is not None and old.model_dump(exclude={"evaluated_at", "digest"}) == \
                row.model_dump(exclude={"evaluated_at", "digest"})
            assert row.evaluated_at == (old.evaluated_at if same and old else at), (n, key)
        before = {k: r.model_copy() for k, r in stored.items()}
