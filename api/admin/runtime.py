"""Runtime status for operators (admin): inbox backlog, parked patients, FHIR round trips."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlmodel import col, func, select

from api.access import Route, allowed
from api.auth import Principal
from api.deps import ReadSessionDep
from api.errors import SIGNED_IN
from flows.unbound_codes import UNBOUND_CODES
from store.models import InboxEvent
from store.scheduling import list_parked_patients

router = APIRouter(prefix="/runtime", tags=["runtime"], responses=SIGNED_IN)
AdminUser = Annotated[Principal, Depends(allowed(Route.RUNTIME_READ))]


@router.get("/status")
def runtime_status(request: Request, session: ReadSessionDep, _admin: AdminUser) -> dict[str, Any]:
    """Inbox counts by status, parked enrolments (with their error), FHIR round trips so far
    and this process's most frequent unbound codes (codes no concept binds, by resource type)."""
    by_status = select(InboxEvent.status, func.count()).group_by(col(InboxEvent.status))
    counts = dict(session.exec(by_status).all())
    parked = [{"patient": row.patient_ref, "pathway": row.pathway_id, "since": row.parked_at,
               "failures": row.failure_count, "error": row.error}
              for row in list_parked_patients(session=session, limit=100)]
    runtime = getattr(request.app.state, "runtime", None)
    loops = getattr(request.app.state, "loops", None)
    return {"inbox": counts, "parked": parked,
            "fhir_round_trips": runtime.round_trips if runtime is not None else None,
            "patients_applied": loops.processed if loops is not None else None,
            "unbound_codes": UNBOUND_CODES.top()}
