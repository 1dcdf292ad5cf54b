"""A patient's pathways as stored: each enrolment with its elements' latest results."""

from __future__ import annotations

from typing import NamedTuple

from sqlmodel import Session

from store.audit_queries import episode_results
from store.enrolments import find_enrolments
from store.models import ElementResultRow, Enrolment


class StoredPathway(NamedTuple):
    enrolment: Enrolment
    results: list[ElementResultRow]


def patient_pathways(*, session: Session, patient_ref: str) -> list[StoredPathway]:
    """Every enrolment of `patient_ref` (oldest first) with its stored element results."""
    enrolments = find_enrolments(session=session, patient_ref=patient_ref)
    results = episode_results(session=session, enrolment_ids=[e.id for e in enrolments])
    return [StoredPathway(e, results[e.id]) for e in enrolments]
