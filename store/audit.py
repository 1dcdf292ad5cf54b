"""The access audit log: who did what to which resource and why, never clinical values."""

from datetime import datetime

from sqlmodel import Session, col, select

from store.models import AuditLog
from store.types import AuditOutcome, as_utc


def record_audit(
    *,
    session: Session,
    actor: str,
    action: str,
    resource: str,
    purpose: str,
    outcome: str,
    at: datetime,
) -> AuditLog:
    """Append one audit entry; `outcome` is ok, denied or error."""
    row = AuditLog(
        at=as_utc(at),
        actor=actor,
        action=action,
        resource=resource,
        purpose=purpose,
        outcome=AuditOutcome(outcome),
    )
    session.add(row)
    session.flush()
    return row


def list_audit(
    *,
    session: Session,
    since: datetime | None = None,
    actor: str | None = None,
    resource: str | None = None,
    limit: int,
) -> list[AuditLog]:
    """Entries at or after `since` matching the filters, oldest first."""
    statement = select(AuditLog)
    if since is not None:
        statement = statement.where(col(AuditLog.at) >= as_utc(since))
    if actor is not None:
        statement = statement.where(AuditLog.actor == actor)
    if resource is not None:
        statement = statement.where(AuditLog.resource == resource)
    statement = statement.order_by(col(AuditLog.at), col(AuditLog.id)).limit(limit)
    return list(session.exec(statement))
