"""The audit dashboard: a page shell, and server-rendered fragments (SVG charts, tables) the
page's script fetches with the user's token (the same sign-in as the worklist)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from api.access import record_access
from api.audit.charts import element_bars, los_scatter, trend_line
from api.audit.pseudonyms import resource_label
from api.audit.routes import (
    AUDIT_RESPONSES,
    AuditUser,
    Unenrolled,
    audited_episode,
    cohort_filter,
    pathway_of,
)
from api.deps import SessionDep
from store.audit_queries import CohortFilter, episode_outcome, episode_results
from store.audit_summary import stored_audit

router = APIRouter(prefix="/ui", tags=["pages"])


def _render(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
    return request.app.state.worklist.templates.TemplateResponse(request, name, context)


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request) -> HTMLResponse:
    """The shell (no patient data: the script fetches the fragments with the user's token)."""
    state = request.app.state.worklist
    return _render(request, "audit.html", {"dev_mode": state.settings.dev_mode,
                                           "pathways": sorted(state.pathways)})


@router.get("/audit/dashboard", response_class=HTMLResponse, responses=AUDIT_RESPONSES)
def audit_dashboard(request: Request, session: SessionDep, user: AuditUser,
                    cohort: Annotated[CohortFilter, Depends(cohort_filter)],
                    unenrolled: Unenrolled = 0) -> HTMLResponse:
    """Charts (compliance by element, trend, compliance vs length of stay), completeness, patients."""
    pathway = pathway_of(request, cohort.pathway_id, cohort.pathway_version)
    state = request.app.state.audit
    audit = stored_audit(pathway, session=session, cohort=cohort, tz=state.tz, unenrolled=unenrolled)
    label = state.label_for(user)
    record_access(session, user, action="read", resource=f"audit/{pathway.id}/dashboard",
                  purpose="quality audit")
    session.commit()
    return _render(request, "audit_dashboard.html", {
        "audit": audit, "label": label, "episode": state.episode_for(user),
        "titles": {e.element_id: e.title for e in audit.elements},
        "bars": Markup(element_bars(audit.elements)), "trend": Markup(trend_line(audit.trend)),
        "scatter": Markup(los_scatter(audit.patients))})


@router.get("/audit/patient/{key}", response_class=HTMLResponse, responses=AUDIT_RESPONSES)
def audit_patient(request: Request, session: SessionDep, user: AuditUser, key: str) -> HTMLResponse:
    """One episode's drill-down table (`key`: its episode key)."""
    found = audited_episode(request, session, user, key)
    enrolment_id = found.enrolment_id
    pathway = pathway_of(request, found.pathway_id, None)
    order = {el.id: i for i, el in enumerate(pathway.elements)}
    rows = sorted(episode_results(session=session, enrolment_ids=[enrolment_id])[enrolment_id],
                  key=lambda r: order.get(r.element_id, len(order)))
    record_access(session, user, action="read", resource=f"enrolment/{enrolment_id}", purpose="quality audit")
    session.commit()
    label = request.app.state.audit.label_for(user)
    return _render(request, "audit_patient.html", {
        "patient": label(found.patient_ref), "ref": resource_label(label), "episode": found,
        "rows": rows, "titles": {el.id: el.title for el in pathway.elements},
        "outcomes": episode_outcome(session=session, enrolment_id=enrolment_id)})
