"""The access log at the API edge: every read or write of patient data, and every refusal."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import HTTPException
from sqlmodel import Session

from api.auth import Principal
from store.access_log import record_access_entry


def record_access(
    session: Session, user: Principal, *, action: str, resource: str, purpose: str, outcome: str = "ok"
) -> None:
    """One access log entry: who, when, what resource, why. Never a clinical value."""
    record_access_entry(
        session=session,
        actor=user.subject,
        action=action,
        resource=resource,
        purpose=purpose,
        outcome=outcome,
        at=datetime.now(UTC),
    )


def require_ward(session: Session, user: Principal, ward: str, *, purpose: str) -> None:
    """403 (recorded as denied) when the user may not see `ward`."""
    if user.may_see_ward(ward):
        return
    record_access(session, user, action="read", resource=f"ward/{ward}", purpose=purpose, outcome="denied")
    session.commit()
    raise HTTPException(status_code=403, detail=f"you are not assigned to ward {ward}")
