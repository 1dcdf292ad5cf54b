"""The audit computed in SQL equals the pure-engine report on a generated cohort (both databases)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col

from bench.synthetic import synthetic_patient
from engine.audit import AuditCase, AuditReport, audit_report, month_of
from engine.evaluate import evaluate
from engine.outcomes import load_outcome_definitions
from store import audit_queries
from store.audit_queries import CohortFilter, patient_counts
from store.audit_summary import StoredAudit, stored_audit
from store.models import AuditEpisode, Enrolment
from tests.audit.cohort import LONDON, gold_cohort, lumbar
from tests.utils.audit import clear_audit, load_cases

UNENROLLED = 4


@cache
def generated_cohort(n: int = 80) -> tuple[AuditCase, ...]:
    """The gold episodes (declines, done late, missing data) and `n` synthetic patients, each
    evaluated at its own instant over ten months (upcoming, overdue, done...), on four wards."""
    rng = random.Random(14)
    pathway = lumbar()
    cases = list(gold_cohort())
    for i in range(n):
        facts, now = synthetic_patient(i, rng)
        facts = replace(facts, patient_id=f"gen-{i}", enrolment_id=f"gen-enr-{i}")
        evaluation = evaluate(pathway, facts, now=now, tz=LONDON)
        cases.append(AuditCase(facts, evaluation, {"ward": f"W{rng.randrange(4)}"}))
    return tuple(cases)


@pytest.fixture(scope="module")
def reports(db_engine: Engine) -> Iterator[tuple[StoredAudit, AuditReport]]:
    cases = generated_cohort()
    ids = [c.evaluation.enrolment_id for c in cases]
    outcomes = load_outcome_definitions()
    clear_audit(db_engine, "lumbar_fusion", ids)
    load_cases(db_engine, lumbar(), cases, outcomes=outcomes, tz=LONDON)
    with Session(db_engine) as session:
        stored = stored_audit(lumbar(), session=session, tz=LONDON, unenrolled=UNENROLLED,
                              cohort=CohortFilter(pathway_id="lumbar_fusion", pathway_version=1))
    engine = audit_report(lumbar(), cases, procedures=len(cases) + UNENROLLED, outcomes=outcomes, tz=LONDON)
    yield stored, engine
    clear_audit(db_engine, "lumbar_fusion", ids)


def test_generated_cohort_is_varied(reports: tuple[StoredAudit, AuditReport]) -> None:
    """The comparison below means something only if every kind of result occurs."""
    _, engine = reports
    assert len(engine.trend) >= 6
    assert engine.breakdown.done and engine.breakdown.done_late and engine.breakdown.not_done
    assert engine.breakdown.missing and engine.declined_not_applicable
    assert 0 < engine.compliance.high.done < engine.compliance.high.counted


def test_sql_elements_phases_and_cohort_equal_the_engine(reports: tuple[StoredAudit, AuditReport]) -> None:
    stored, engine = reports
    assert stored.elements == engine.elements
    assert stored.phases == engine.phases
    assert (stored.overall, stored.high, stored.eras) == (
        engine.compliance.overall, engine.compliance.high, engine.compliance.eras)
    assert stored.by_item == engine.compliance.by_item
    assert (stored.breakdown, stored.phase_breakdown) == (engine.breakdown, engine.phase_breakdown)
    assert stored.declined_not_applicable == engine.declined_not_applicable


def test_sql_trend_completeness_and_outcomes_equal_the_engine(
        reports: tuple[StoredAudit, AuditReport]) -> None:
    stored, engine = reports
    assert stored.trend == engine.trend
    assert stored.completeness == engine.completeness
    assert stored.outcomes == engine.outcomes


def test_sql_patients_equal_the_engine(reports: tuple[StoredAudit, AuditReport]) -> None:
    stored, engine = reports
    by_sql = {p.patient_ref.split("/", 1)[1]: (p.month, p.compliance, p.eras, p.missing, p.breakdown)
              for p in stored.patients}
    by_engine = {r.patient_id: (r.attributes.get("surgery_month"), r.compliance.overall,
                                r.compliance.eras, len(r.missing), r.breakdown) for r in engine.patients}
    assert by_sql == by_engine


def test_episodes_stored_before_their_eras_items_are_summed_from_results(
        db_engine: Engine, reports: tuple[StoredAudit, AuditReport]) -> None:
    """Migration 0007 leaves the ERAS-item masks null on older episodes: the report sums the
    items from their element results instead, to the same figures."""
    stored, _ = reports
    with Session(db_engine) as session:
        session.execute(update(AuditEpisode).where(col(AuditEpisode.pathway_id) == "lumbar_fusion")
                        .values(items_counted=None, items_done=None))
        again = stored_audit(lumbar(), session=session, tz=LONDON, unenrolled=UNENROLLED,
                             cohort=CohortFilter(pathway_id="lumbar_fusion", pathway_version=1))
        session.rollback()
    assert again == stored


def _episode(session: Session, i: int, start: datetime | None) -> None:
    eid = f"month-edge-{i}"
    session.add(Enrolment(id=eid, patient_ref=f"Patient/month-edge-{i}", pathway_id="month_edges",
                          pathway_version=1, status="active", enrolled_at=SOME_INSTANT, enrolled_by="test",
                          updated_at=SOME_INSTANT))
    session.flush()
    session.add(AuditEpisode(enrolment_id=eid, patient_ref=f"Patient/month-edge-{i}",
                             pathway_id="month_edges", pathway_version=1, surgery_start=start, done=1,
                             counted=2, updated_at=SOME_INSTANT))


SOME_INSTANT = datetime(2026, 1, 1, tzinfo=UTC)
# Instants around local month starts in London, in winter (UTC+0) and summer (UTC+1), around
# both clock changes, and a surgery not yet known.
EDGES = (datetime(2025, 1, 1, 0, 0, tzinfo=LONDON), datetime(2025, 1, 31, 23, 59, 59, 999999, tzinfo=LONDON),
         datetime(2025, 4, 1, 0, 0, tzinfo=LONDON), datetime(2025, 3, 31, 23, 59, 59, 999999, tzinfo=LONDON),
         datetime(2025, 3, 30, 1, 30, tzinfo=UTC), datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
         datetime(2025, 10, 31, 23, 30, tzinfo=UTC), datetime(2025, 11, 1, 0, 0, tzinfo=LONDON),
         datetime(2025, 6, 30, 23, 0, tzinfo=UTC), datetime(2025, 6, 30, 22, 59, 59, tzinfo=UTC), None)


def test_sql_surgery_month_is_the_local_month_at_its_edges(db: Session) -> None:
    """The SQL month (bounds at local midnight on the 1st) equals `month_of` for instants on
    either side of month starts, in summer and winter time and across the clock changes."""
    for i, start in enumerate(EDGES):
        _episode(db, i, start)
    db.flush()
    rows = patient_counts(session=db, cohort=CohortFilter(pathway_id="month_edges"), items={}, tz=LONDON,
                          unmasked=False, with_outcomes=False)
    got = {r.patient_ref: r.month for r in rows}
    expected = {f"Patient/month-edge-{i}": None if s is None else month_of(s, LONDON)
                for i, s in enumerate(EDGES)}
    assert got == expected
    assert got["Patient/month-edge-8"] == "2025-07" and got["Patient/month-edge-9"] == "2025-06"  # by hand


def test_sql_surgery_months_read_again_when_an_episode_lands_outside_them(
        db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """An episode written between reading the months and the rows (here: the first read of
    the months misses the last) makes the report read the months again, not drop a month."""
    for i, start in enumerate(EDGES):
        _episode(db, i, start)
    db.flush()
    calls = []
    real = audit_queries.surgery_months

    def stale(**kw: object) -> list[tuple[str, datetime]]:
        months = real(**kw)  # type: ignore[arg-type]
        calls.append(months)
        return months[:-1] if len(calls) == 1 else months
    monkeypatch.setattr(audit_queries, "surgery_months", stale)
    rows = patient_counts(session=db, cohort=CohortFilter(pathway_id="month_edges"), items={}, tz=LONDON,
                          unmasked=False, with_outcomes=False)
    assert len(calls) == 2
    assert {r.month for r in rows} == {None if s is None else month_of(s, LONDON) for s in EDGES}
