"""The audit dashboard: a page shell, and server-rendered fragments (SVG charts, tables) the
page's script fetches with the user's token (the same sign-in as the worklist)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from api.access import record_access
from api.audit.chart_routes import cohort_charts
from api.audit.charts import heat_map_svg, p_chart_svg, stay_scatter_svg
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
from api.patients.routes import timeline_context
from api.patients.timeline import build_timeline, resource_type_only
from api.worklist.routes import clock_now
from store.audit_queries import CohortFilter, episode_outcome, episode_results
from store.enrolments import require_enrolment

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
    """Charts (p-chart by month, element x month heat map, compliance vs length of stay, each
    with its CSV link under the same filters), completeness, patients."""
    audit, charts = cohort_charts(request, session, user, cohort, unenrolled)
    label = request.app.state.audit.label_for(user)
    record_access(session, user, action="read", resource=f"audit/{cohort.pathway_id}/dashboard",
                  purpose="quality audit")
    session.commit()
    return _render(request, "audit_dashboard.html", {
        "audit": audit, "charts": charts, "label": label, "query": request.url.query,
        "episode": request.app.state.audit.episode_for(user),
        "titles": {e.element_id: e.title for e in audit.elements},
        "p_chart": Markup(p_chart_svg(charts.p_chart, charts.measure)),
        "heat_map": Markup(heat_map_svg(charts)), "scatter": Markup(stay_scatter_svg(charts))})


@router.get("/audit/patient/{key}", response_class=HTMLResponse, responses=AUDIT_RESPONSES)
def audit_patient(request: Request, session: SessionDep, user: AuditUser, key: str) -> HTMLResponse:
    """One episode's drill-down table (`key`: its episode key)."""
    found = audited_episode(request, session, user, key)
    enrolment_id = found.enrolment_id
    pathway = pathway_of(request, found.pathway_id, None)
    order = {el.id: i for i, el in enumerate(pathway.elements)}
    rows = sorted(episode_results(session=session, enrolment_ids=[enrolment_id])[enrolment_id],
                  key=lambda r: order.get(r.element_id, len(order)))
    state = request.app.state.audit
    label = state.label_for(user)
    # The patient view's timeline, pseudonymised: the episode key only, proof as resource type + time.
    timeline = build_timeline(pathway, require_enrolment(session=session, enrolment_id=enrolment_id), rows,
                              key=state.episode_for(user)(enrolment_id), now=clock_now(request),
                              evidence=resource_type_only)
    page = _render(request, "audit_patient.html", timeline_context(request, [timeline], **{
        "patient": label(found.patient_ref), "ref": resource_label(label), "episode": found,
        "rows": rows, "titles": {el.id: el.title for el in pathway.elements},
        "outcomes": episode_outcome(session=session, enrolment_id=enrolment_id)}))
    # Recorded once rendered: the commit expires the rows, and each would be read again.
    record_access(session, user, action="read", resource=f"enrolment/{enrolment_id}", purpose="quality audit")
    session.commit()
    return page
