"""The audit computed in SQL equals the pure-engine report on a generated cohort (both databases)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from functools import cache

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col

from bench.synthetic import synthetic_patient
from engine.audit import AuditCase, AuditReport, audit_report
from engine.evaluate import evaluate
from engine.outcomes import load_outcome_definitions
from store.audit_queries import CohortFilter
from store.audit_summary import StoredAudit, stored_audit
from store.models import AuditEpisode
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
