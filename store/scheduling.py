"""What the tick evaluates next, and the enrolments parked after failing again and again."""

from datetime import datetime

from sqlmodel import Session, col, select

from store.enrolments import require_enrolment
from store.models import Enrolment
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
