"""The access log for admins: who read or changed which patient's data, when and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.access import Route, allowed
from api.auth import Principal
from api.deps import IsoInstant, SessionDep
from api.errors import SIGNED_IN
from store.access_log import list_access_entries
from store.models import AccessLogEntryPublic

router = APIRouter(prefix="/admin/audit", tags=["access-log"], responses=SIGNED_IN)

AdminUser = Annotated[Principal, Depends(allowed(Route.ACCESS_LOG_READ))]


@router.get("", response_model=list[AccessLogEntryPublic])
def read_audit(
    session: SessionDep,
    _admin: AdminUser,
    since: IsoInstant | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    resource: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AccessLogEntryPublic]:
    """Audit entries, oldest first (admin only)."""
    rows = list_access_entries(session=session, since=since, actor=actor, resource=resource, limit=limit)
    return [AccessLogEntryPublic.model_validate(row, from_attributes=True) for row in rows]
