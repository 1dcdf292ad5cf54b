"""The access log: who read or changed which resource, when and why; never clinical values."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert
from sqlmodel import Session, col, select

from store.models import AccessLogEntry
from store.types import AccessOutcome, as_utc


def record_access_entry(
    *,
    session: Session,
    actor: str,
    action: str,
    resource: str,
    purpose: str,
    outcome: str,
    at: datetime,
) -> AccessLogEntry:
    """Append one audit entry; `outcome` is ok, denied or error."""
    row = AccessLogEntry(
        at=as_utc(at),
        actor=actor,
        action=action,
        resource=resource,
        purpose=purpose,
        outcome=AccessOutcome(outcome),
    )
    session.add(row)
    session.flush()
    return row


def record_access_entries(
    *, session: Session, actor: str, action: str, resources: Sequence[str], purpose: str, at: datetime
) -> None:
    """One `ok` entry per resource in a single INSERT (a worklist page reads tens of patients)."""
    if resources:
        session.connection().execute(insert(AccessLogEntry), [
            {"at": as_utc(at), "actor": actor, "action": action, "resource": resource, "purpose": purpose,
             "outcome": AccessOutcome.OK} for resource in resources])


def list_access_entries(
    *,
    session: Session,
    since: datetime | None = None,
    actor: str | None = None,
    resource: str | None = None,
    limit: int,
) -> list[AccessLogEntry]:
    """Entries at or after `since` matching the filters, oldest first."""
    statement = select(AccessLogEntry)
    if since is not None:
        statement = statement.where(col(AccessLogEntry.at) >= as_utc(since))
    if actor is not None:
        statement = statement.where(AccessLogEntry.actor == actor)
    if resource is not None:
        statement = statement.where(AccessLogEntry.resource == resource)
    statement = statement.order_by(col(AccessLogEntry.at), col(AccessLogEntry.id)).limit(limit)
    return list(session.exec(statement))
