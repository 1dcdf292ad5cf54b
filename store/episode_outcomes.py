"""The stored outcomes of a cohort's episodes, one row per episode, for the outcomes API and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from store.audit_queries import CohortFilter, cohort_conditions
from store.models import AuditEpisode, AuditOutcome


@dataclass(frozen=True)
class EpisodeOutcomes:
    enrolment_id: str
    patient_ref: str
    surgery_start: datetime | None
    computed_at: datetime
    values: dict[str, Any]


def episode_outcomes(*, session: Session, cohort: CohortFilter) -> list[EpisodeOutcomes]:
    """Each episode of the cohort that has outcomes (kept by every apply), by surgery start."""
    query = (sa_select(col(AuditEpisode.enrolment_id), col(AuditEpisode.patient_ref),
                       col(AuditEpisode.surgery_start), col(AuditOutcome.computed_at),
                       col(AuditOutcome.values))
             .join(AuditOutcome, col(AuditOutcome.enrolment_id) == col(AuditEpisode.enrolment_id))
             .where(*cohort_conditions(cohort))
             .order_by(col(AuditEpisode.surgery_start), col(AuditEpisode.enrolment_id)))
    return [EpisodeOutcomes(e, ref, start, at, dict(values or {}))
            for e, ref, start, at, values in session.execute(query)]
