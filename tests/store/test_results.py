"""Element results and cohort attributes stored per enrolment: upserts, the engine's counts, outcomes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from engine.outcomes import load_outcome_definitions, patient_outcomes
from engine.patientfile import patient_json
from store.episode_facts import record_facts
from store.models import AuditEpisode, AuditOutcome, ElementResultRow, Enrolment, EpisodeFacts
from store.results import episode_attributes, record_element_results, record_outcomes
from tests.audit.cohort import LONDON, gold_cohort, lumbar

AT = datetime(2026, 4, 15, 12, tzinfo=UTC)


def _enrol(db: Session, patient: str) -> Enrolment:
    row = Enrolment(patient_ref=f"Patient/{patient}-{id(db)}", pathway_id="lumbar_fusion", pathway_version=1,
                    status="active", enrolled_at=AT, enrolled_by="test", updated_at=AT)
    db.add(row)
    db.flush()
    return row


def _results(db: Session, enrolment_id: str) -> dict[str, ElementResultRow]:
    rows = db.exec(select(ElementResultRow).where(col(ElementResultRow.enrolment_id) == enrolment_id))
    return {r.element_id: r for r in rows}


def test_record_element_results_stores_engine_counts(db: Session) -> None:
    case = next(c for c in gold_cohort() if c.facts.patient_id == "P02")
    row = _enrol(db, "P02")
    attrs = episode_attributes(lumbar(), case.evaluation, case.facts, ward="W1", surgeon="B")
    record_element_results(session=db, enrolment_id=row.id, evaluation=case.evaluation, attributes=attrs,
                           at=AT)
    stored = _results(db, row.id)
    expected = {r.element_id: r.counts for r in case.evaluation.elements}
    assert {k: r.counts for k, r in stored.items()} == expected
    edu = stored["patient_education"]
    assert (edu.status, edu.decline_reason, edu.evidence, edu.missing) == (
        "declined", "patient-refused", ["Task/P02-patient_education-0"], False)
    episode = db.get(AuditEpisode, row.id)
    assert episode is not None
    assert (episode.variant, episode.sex, episode.apfel, episode.age_at_surgery) == ("fusion", "male", 1, 63)
    assert (episode.done, episode.counted, episode.missing) == (40, 41, 0)
    assert episode.surgery_start == case.evaluation.anchors["surgery_start"]


def test_record_element_results_upserts_and_drops_stale(db: Session) -> None:
    p01, p13 = (next(c for c in gold_cohort() if c.facts.patient_id == p) for p in ("P01", "P13"))
    row = _enrol(db, "P01")
    attrs = episode_attributes(lumbar(), p01.evaluation, p01.facts, ward="W1")
    record_element_results(session=db, enrolment_id=row.id, evaluation=p01.evaluation, attributes=attrs,
                           at=AT)
    later = AT + timedelta(days=1)
    fewer = type(p13.evaluation)(**{**p13.evaluation.__dict__, "elements": p13.evaluation.elements[:10]})
    record_element_results(session=db, enrolment_id=row.id, evaluation=fewer, attributes=attrs, at=later)
    db.flush()
    stored = _results(db, row.id)
    changed = {e.element_id for e, before in zip(fewer.elements, p01.evaluation.elements, strict=False)
               if e != before}
    assert len(stored) == 10 and changed
    # evaluated_at is when a result last changed: an unchanged result is not rewritten.
    assert {k for k, r in stored.items() if r.evaluated_at == later} <= changed
    record_element_results(session=db, enrolment_id=row.id, evaluation=fewer, attributes=attrs,
                           at=later + timedelta(hours=1))
    assert not [r for r in db.dirty if isinstance(r, type(next(iter(stored.values()))))]


def test_record_outcomes_replaces_values(db: Session) -> None:
    case = gold_cohort()[0]
    row = _enrol(db, "P01")
    outcomes = patient_outcomes(case.facts, case.evaluation, definitions=load_outcome_definitions(),
                                tz=LONDON)
    record_outcomes(session=db, enrolment_id=row.id, outcomes=outcomes, at=AT)
    record_outcomes(session=db, enrolment_id=row.id, outcomes=outcomes, at=AT + timedelta(hours=1))
    stored = db.get(AuditOutcome, row.id)
    assert stored is not None and stored.values["length_of_stay_days"] == 4.25


def test_record_outcomes_writes_only_changed_values(db: Session) -> None:
    """An unchanged outcome is not rewritten (its computed_at stays); a changed one is, and the
    row the session holds reads what is stored."""
    case = gold_cohort()[0]
    row = _enrol(db, "P01")
    outcomes = patient_outcomes(case.facts, case.evaluation, definitions=load_outcome_definitions(),
                                tz=LONDON)
    record_outcomes(session=db, enrolment_id=row.id, outcomes=outcomes, at=AT)
    held = db.get(AuditOutcome, row.id)
    assert held is not None and held.computed_at == AT
    record_outcomes(session=db, enrolment_id=row.id, outcomes=outcomes, at=AT + timedelta(hours=1))
    assert held.computed_at == AT
    readmitted = replace(outcomes, readmitted=not outcomes.readmitted)
    record_outcomes(session=db, enrolment_id=row.id, outcomes=readmitted, at=AT + timedelta(hours=2))
    assert (held.values, held.computed_at) == (readmitted.stored(), AT + timedelta(hours=2))
    db.expire_all()
    assert db.get(AuditOutcome, row.id).values == readmitted.stored()  # type: ignore[union-attr]


def test_record_facts_inserts_then_replaces(db: Session) -> None:
    """The first evaluation's facts are inserted, a later one's written over them (one row)."""
    first, second = gold_cohort()[0].facts, gold_cohort()[1].facts
    row = _enrol(db, "P01")
    record_facts(session=db, enrolment_id=row.id, facts=first, at=AT)
    record_facts(session=db, enrolment_id=row.id, facts=second, at=AT + timedelta(hours=1))
    db.expire_all()
    stored = db.exec(select(EpisodeFacts).where(col(EpisodeFacts.enrolment_id) == row.id)).all()
    assert [(s.facts, s.evaluated_at) for s in stored] == [(patient_json(second), AT + timedelta(hours=1))]
