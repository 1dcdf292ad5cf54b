"""What the tick evaluates next, and the enrolments parked after failing again and again."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from store.enrolments import find_enrolments, require_enrolment
from store.models import Enrolment, PatientFailure
from store.types import EnrolmentStatus, as_utc


def due_for_check(
    *, session: Session, now: datetime, limit: int, claim: bool = False
) -> list[Enrolment]:
    """Active, unparked enrolments whose next_check_at has come, earliest first.

    With `claim`, the rows are locked (FOR UPDATE SKIP LOCKED on PostgreSQL) until the
    transaction ends, so that concurrent workers take different enrolments.
    """
    statement = (
        select(Enrolment)
        .where(
            Enrolment.status == EnrolmentStatus.ACTIVE,
            col(Enrolment.parked_at).is_(None),
            col(Enrolment.next_check_at) <= as_utc(now),
        )
        .order_by(col(Enrolment.next_check_at), col(Enrolment.id))
        .limit(limit)
    )
    if claim:
        statement = statement.with_for_update(skip_locked=True)
    return list(session.exec(statement))


def park(*, session: Session, enrolment_id: str, error: str, at: datetime) -> Enrolment:
    """Stop evaluating an enrolment until someone unparks it."""
    enrolment = require_enrolment(session=session, enrolment_id=enrolment_id)
    enrolment.parked_at = as_utc(at)
    enrolment.parked_error = error
    enrolment.updated_at = as_utc(at)
    session.add(enrolment)
    session.flush()
    return enrolment


def record_failure(
    *, session: Session, enrolment_id: str, error: str, at: datetime, park_after: int
) -> Enrolment:
    """Count one more failed apply; the `park_after`-th failure in a row parks the enrolment."""
    enrolment = require_enrolment(session=session, enrolment_id=enrolment_id)
    enrolment.failure_count += 1
    enrolment.parked_error = error
    enrolment.updated_at = as_utc(at)
    if enrolment.failure_count >= park_after and enrolment.parked_at is None:
        enrolment.parked_at = as_utc(at)
    session.add(enrolment)
    session.flush()
    return enrolment


def clear_failures(*, session: Session, enrolment_id: str, at: datetime) -> Enrolment:
    """Forget past failures after a successful apply (a parked enrolment stays parked)."""
    enrolment = require_enrolment(session=session, enrolment_id=enrolment_id)
    if enrolment.failure_count and enrolment.parked_at is None:
        enrolment.failure_count = 0
        enrolment.parked_error = None
        enrolment.updated_at = as_utc(at)
        session.add(enrolment)
        session.flush()
    return enrolment


def unpark(*, session: Session, enrolment_id: str, at: datetime) -> Enrolment:
    """Let the tick evaluate the enrolment again, with its failures forgotten."""
    enrolment = require_enrolment(session=session, enrolment_id=enrolment_id)
    enrolment.parked_at = None
    enrolment.parked_error = None
    enrolment.failure_count = 0
    enrolment.updated_at = as_utc(at)
    session.add(enrolment)
    session.flush()
    return enrolment


def list_parked(*, session: Session, limit: int | None = None) -> list[Enrolment]:
    """Parked enrolments, longest parked first."""
    statement = (
        select(Enrolment)
        .where(col(Enrolment.parked_at).is_not(None))
        .order_by(col(Enrolment.parked_at), col(Enrolment.id))
    )
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.exec(statement))


@dataclass(frozen=True)
class ParkedPatient:
    """A parked patient as operators see it: one row per parked enrolment, or the patient alone
    when the store has no enrolment for them (pathway None)."""

    patient_ref: str
    pathway_id: str | None
    parked_at: datetime
    failure_count: int
    error: str | None


def record_patient_failure(*, session: Session, patient_ref: str, error: str, at: datetime,
                           park_after: int) -> None:
    """One more failed apply of the patient: counted on each enrolment, or on the patient."""
    enrolments = find_enrolments(session=session, patient_ref=patient_ref)
    for enrolment in enrolments:
        record_failure(session=session, enrolment_id=enrolment.id, error=error, at=at,
                       park_after=park_after)
    if enrolments:
        return
    row = session.get(PatientFailure, patient_ref, with_for_update=True)
    if row is None:
        row = PatientFailure(patient_ref=patient_ref, updated_at=as_utc(at))
    row.failure_count += 1
    row.error, row.updated_at = error, as_utc(at)
    if row.failure_count >= park_after and row.parked_at is None:
        row.parked_at = as_utc(at)
    session.add(row)
    session.flush()


def clear_patient_failures(*, session: Session, patient_ref: str, at: datetime) -> None:
    """A successful apply: forget the patient's past failures (parked ones stay parked).

    Run after every successful apply, where there is mostly nothing to forget: one statement
    says whether there is, and only then are the enrolments reset (the session's own copies
    updated in step) and the patient's row deleted.
    """
    if not session.execute(_failures_to_clear(), {"ref": patient_ref}).scalar():
        return
    session.execute(update(Enrolment).where(
        col(Enrolment.patient_ref) == patient_ref, col(Enrolment.failure_count) != 0,
        col(Enrolment.parked_at).is_(None)).values(failure_count=0, parked_error=None, updated_at=as_utc(at)))
    session.execute(delete(PatientFailure).where(
        col(PatientFailure.patient_ref) == patient_ref, col(PatientFailure.parked_at).is_(None)))


def parked_patients(*, session: Session, patient_refs: Collection[str]) -> set[str]:
    """Those of the patients that are parked: every active enrolment of theirs is (or, with no
    active enrolment, the patient alone is). Asked once for a drain's whole batch, in two
    statements, not in a transaction per patient before each apply."""
    if not patient_refs:
        return set()
    refs = list(patient_refs)
    parked = set(session.execute(sa_select(_FAILURES.c.patient_ref).where(
        _FAILURES.c.patient_ref.in_(refs), _FAILURES.c.parked_at.is_not(None))).scalars())
    every_active_parked = (sa_select(_ENROLMENTS.c.patient_ref)
                           .where(_ENROLMENTS.c.patient_ref.in_(refs),
                                  _ENROLMENTS.c.status == EnrolmentStatus.ACTIVE.value)
                           .group_by(_ENROLMENTS.c.patient_ref)
                           .having(func.count() == func.count(_ENROLMENTS.c.parked_at)))
    return parked | set(session.execute(every_active_parked).scalars())


_ENROLMENTS = Enrolment.__table__  # type: ignore[attr-defined]
_FAILURES = PatientFailure.__table__  # type: ignore[attr-defined]


@cache
def _failures_to_clear() -> Any:
    """Whether the patient has failures a success forgets (statement built and compiled once)."""
    return sa_select(or_(
        exists().where(_ENROLMENTS.c.patient_ref == bindparam("ref"), _ENROLMENTS.c.failure_count != 0,
                       _ENROLMENTS.c.parked_at.is_(None)),
        exists().where(_FAILURES.c.patient_ref == bindparam("ref"), _FAILURES.c.parked_at.is_(None))))


def unpark_patient(*, session: Session, patient_ref: str, at: datetime) -> None:
    """Let every enrolment of the patient (and the patient) be evaluated again."""
    for enrolment in find_enrolments(session=session, patient_ref=patient_ref):
        unpark(session=session, enrolment_id=enrolment.id, at=at)
    row = session.get(PatientFailure, patient_ref)
    if row is not None:
        session.delete(row)
        session.flush()


def list_parked_patients(*, session: Session, limit: int | None = None) -> list[ParkedPatient]:
    """Parked enrolments and parked patients with no enrolment, longest parked first."""
    rows = [ParkedPatient(e.patient_ref, e.pathway_id, e.parked_at, e.failure_count, e.parked_error)
            for e in list_parked(session=session, limit=limit) if e.parked_at is not None]
    alone = (select(PatientFailure).where(col(PatientFailure.parked_at).is_not(None))
             .order_by(col(PatientFailure.parked_at)))
    if limit is not None:
        alone = alone.limit(limit)
    rows += [ParkedPatient(p.patient_ref, None, p.parked_at, p.failure_count, p.error)
             for p in session.exec(alone) if p.parked_at is not None]
    rows.sort(key=lambda r: r.parked_at)
    return rows[:limit] if limit is not None else rows
