"""One patient's pathway at a glance: the timeline as JSON, and the page (shell and SVG fragment)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.access import Route, allowed, may, record_access, require_ward
from api.auth import Principal
from api.deps import SessionDep
from api.errors import SIGNED_IN, problems
from api.patients.svg import local_time, timeline_svg
from api.patients.timeline import (
    STATUS_MEANINGS,
    Timeline,
    build_timeline,
    identified,
    status_label,
    timeline_json,
)
from api.worklist.routes import clock_now
from store.patient_pathway import StoredPathway, patient_pathways

router = APIRouter(tags=["patients"], responses=SIGNED_IN | problems(404))
PURPOSE = "patient pathway view"
ROUTE = Route.PATIENT_PATHWAY_READ

# A FHIR id (FHIR R4 `id`: letters, digits, '-' and '.', at most 64).
PatientId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
Reader = Annotated[Principal, Depends(allowed(ROUTE))]


def _visible(session: Session, user: Principal, patient_id: str) -> list[StoredPathway]:
    """The patient's enrolments on wards the user may read: 403 (logged) when none, 404 when the
    patient is on no pathway."""
    stored = patient_pathways(session=session, patient_ref=f"Patient/{patient_id}")
    if not stored:
        raise HTTPException(status_code=404, detail="this patient is on no pathway")
    visible = [s for s in stored if may(user, ROUTE, s.enrolment.ward or "")]
    if not visible:
        require_ward(session, user, stored[0].enrolment.ward or "", route=ROUTE, purpose=PURPOSE)
    return visible


def patient_timelines(request: Request, session: Session, user: Principal, patient_id: str) -> list[Timeline]:
    """The identified timelines of the patient's visible enrolments (on the pathways loaded);
    the read is recorded in the access log."""
    pathways = request.app.state.worklist.pathways
    now = clock_now(request)
    timelines = [build_timeline(pathways[s.enrolment.pathway_id], s.enrolment, s.results,
                                key=s.enrolment.id, now=now, evidence=identified)
                 for s in _visible(session, user, patient_id) if s.enrolment.pathway_id in pathways]
    # After reading: the commit expires the rows, and reading them again would cost a query each.
    record_access(session, user, action="read", resource=f"Patient/{patient_id}/pathway", purpose=PURPOSE)
    session.commit()
    return timelines


@router.get("/patients/{patient_id}/pathway")
def read_pathway(request: Request, session: SessionDep, user: Reader, patient_id: PatientId,
                 evidence: bool = False) -> dict[str, Any]:
    """The patient's pathways as timelines: phases, each element's windows and status against
    the anchors; with `evidence=true`, the proof (FHIR reference and time) and decline reasons."""
    timelines = patient_timelines(request, session, user, patient_id)
    return {"patient": patient_id, "pathways": [timeline_json(t, evidence=evidence) for t in timelines]}


def timeline_context(request: Request, timelines: list[Timeline], **extra: Any) -> dict[str, Any]:
    """What `_timeline.html` needs: each timeline with its SVG, the legend and the time format."""
    tz = request.app.state.worklist.tz
    return {"timelines": [(t, timeline_svg(t, tz)) for t in timelines], "meanings": STATUS_MEANINGS,
            "label": status_label, "when": lambda t: local_time(t, tz), **extra}


@router.get("/ui/patients/{patient_id}", response_class=HTMLResponse, tags=["pages"])
async def patient_page(request: Request, patient_id: PatientId) -> HTMLResponse:
    """The page shell (no patient data: its script fetches the timeline with the user's token)."""
    state = request.app.state.worklist
    return state.templates.TemplateResponse(request, "patient.html", {"patient_id": patient_id})


@router.get("/ui/patients/{patient_id}/timeline", response_class=HTMLResponse, tags=["pages"])
def patient_fragment(request: Request, session: SessionDep, user: Reader,
                     patient_id: PatientId) -> HTMLResponse:
    """The timeline fragment: SVG, legend, and each element's proof or decline reason on demand."""
    timelines = patient_timelines(request, session, user, patient_id)
    return request.app.state.worklist.templates.TemplateResponse(
        request, "patient_timeline.html", timeline_context(request, timelines, patient=patient_id))
