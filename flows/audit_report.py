"""The nightly audit: outcomes of the episodes updated yesterday, and report files for the day and month."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path

from sqlmodel import Session, col, select

from engine.audit import audit_report
from engine.audit_export import summary_csv
from engine.model import Pathway
from engine.outcomes import OutcomeDefinitions, patient_outcomes
from fhir_adapters.measure import measure_report
from flows.apply import read_and_evaluate
from flows.runtime import Runtime
from store.audit_queries import CohortFilter
from store.audit_summary import stored_cases
from store.db import session_scope
from store.models import AuditEpisode
from store.results import record_outcomes


@dataclass(frozen=True)
class Period:
    label: str
    first: date
    last: date

    def cohort(self, pathway: Pathway, tz: tzinfo) -> CohortFilter:
        start = datetime.combine(self.first, time(0), tz).astimezone(UTC)
        end = datetime.combine(self.last + timedelta(days=1), time(0), tz).astimezone(UTC)
        return CohortFilter(pathway_id=pathway.id, pathway_version=pathway.version, start=start, end=end)


def previous_periods(today: date) -> tuple[Period, Period]:
    """Yesterday, and the month yesterday belongs to (up to yesterday)."""
    yesterday = today - timedelta(days=1)
    return (Period(yesterday.isoformat(), yesterday, yesterday),
            Period(yesterday.strftime("%Y-%m"), yesterday.replace(day=1), yesterday))


def updated_enrolments(rt: Runtime, *, since: datetime, until: datetime) -> list[tuple[str, str]]:
    """(enrolment id, patient id) of the episodes whose results changed in [since, until)."""
    with session_scope(rt.db) as session:
        rows = session.exec(select(AuditEpisode.enrolment_id, AuditEpisode.patient_ref).where(
            col(AuditEpisode.updated_at) >= since, col(AuditEpisode.updated_at) < until))
        return [(e, ref.split("/", 1)[-1]) for e, ref in rows]


async def compute_outcomes(rt: Runtime, patient_id: str, *, definitions: OutcomeDefinitions,
                           now: datetime) -> int:
    """Read the record, evaluate each active enrolment (writing no plan) and store its outcomes."""
    evaluated = await read_and_evaluate(rt, patient_id, now=now)
    with session_scope(rt.db) as session:
        for enrolment, evaluation, facts in evaluated:
            record_outcomes(session=session, enrolment_id=enrolment.id, at=now,
                            outcomes=patient_outcomes(facts, evaluation, definitions=definitions, tz=rt.tz))
    return len(evaluated)


def write_period_report(session: Session, pathway: Pathway, period: Period, *, tz: tzinfo,
                        directory: Path, generated: datetime) -> list[Path]:
    """summary.csv and a summary MeasureReport (no patient ids in either) for one period."""
    cases = stored_cases(session=session, cohort=period.cohort(pathway, tz))
    report = audit_report(pathway, cases, tz=tz)
    out = directory / pathway.id
    out.mkdir(parents=True, exist_ok=True)
    summary = out / f"{period.label}-summary.csv"
    summary.write_text(summary_csv(report))
    measure = out / f"{period.label}-measure-report.json"
    measure.write_text(json.dumps(measure_report(pathway, report, period_start=period.first,
                                                 period_end=period.last, generated=generated), indent=1))
    return [summary, measure]
