"""The audit's outcomes (stay, MME, PONV, catheter hours...) per episode, as every apply keeps them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.access import record_access
from api.audit.routes import AUDIT_RESPONSES, PURPOSE, AuditUser, Cohort
from api.deps import SessionDep
from store.episode_outcomes import episode_outcomes

router = APIRouter(prefix="/audit", tags=["audit"], responses=AUDIT_RESPONSES)


@router.get("/outcomes")
def read_outcomes(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort) -> dict[str, Any]:
    """Each episode's outcomes, patients pseudonymised unless the role may re-identify."""
    label = request.app.state.audit.label_for(user)
    key = request.app.state.audit.episode_for(user)
    rows = episode_outcomes(session=session, cohort=cohort)
    body = {"pathway": cohort.pathway_id, "version": cohort.pathway_version,
            "episodes": [{"patient": label(r.patient_ref), "episode": key(r.enrolment_id),
                          "surgery_start": r.surgery_start, "computed_at": r.computed_at,
                          "outcomes": r.values} for r in rows]}
    record_access(session, user, action="read", resource=f"audit/{cohort.pathway_id}/outcomes",
                  purpose=PURPOSE)
    session.commit()
    return body
