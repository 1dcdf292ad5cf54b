"""The quality audit API: compliance, completeness, drill-down and exports (quality and admin roles)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from api.access import Route, allowed, record_access
from api.audit.view import Label, completeness_json, compliance_json, timeline_json
from api.auth import Principal
from api.deps import SessionDep
from api.errors import SIGNED_IN, problems
from engine.audit import audit_report
from engine.audit_export import declines_csv, matrix_csv, summary_csv
from engine.model import Pathway
from fhir_adapters.measure import measure_report, pathway_measure
from store.audit_queries import CohortFilter, episode, episode_outcome, episode_results, parse_age_band
from store.audit_summary import StoredAudit, stored_audit, stored_cases
from store.models import AuditEpisode

# Every route names a pathway or an episode: 404 when it is not there.
AUDIT_RESPONSES = SIGNED_IN | problems(404)
router = APIRouter(prefix="/audit", tags=["audit"], responses=AUDIT_RESPONSES)

PURPOSE = "quality audit"


AuditUser = Annotated[Principal, Depends(allowed(Route.AUDIT_READ))]


def pathway_of(request: Request, pathway: str, version: int | None) -> Pathway:
    loaded: Pathway | None = request.app.state.worklist.pathways.get(pathway)
    if loaded is None or (version is not None and version != loaded.version):
        raise HTTPException(status_code=404, detail=f"no pathway {pathway} version {version or ''} loaded")
    return loaded


def _instant(day: date | None, request: Request, shift: int = 0) -> datetime | None:
    if day is None:
        return None
    try:
        local = datetime.combine(day + timedelta(days=shift), time(0), request.app.state.audit.tz)
        return local.astimezone(UTC)
    except OverflowError:  # 9999-12-31 + 1 day: a 422 saying so, not a 500
        raise HTTPException(status_code=422, detail=f"the date {day} is out of range") from None


def cohort_filter(
    request: Request,
    pathway: Annotated[str, Query(max_length=200)],
    version: int | None = None,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    variant: Annotated[str | None, Query(max_length=100)] = None,
    ward: Annotated[str | None, Query(max_length=100)] = None,
    surgeon: Annotated[str | None, Query(max_length=100)] = None,
    sex: Annotated[str | None, Query(max_length=20)] = None,
    age_band: Annotated[str | None, Query(pattern=r"^\d{1,3}(-\d{1,3}|\+)$")] = None,
    apfel: Annotated[int | None, Query(ge=0, le=4)] = None,
) -> CohortFilter:
    """The cohort: surgery on `from` .. `to` (local days, both included) and the attribute filters."""
    loaded = pathway_of(request, pathway, version)
    return CohortFilter(pathway_id=pathway, pathway_version=loaded.version,
                        start=_instant(from_, request), end=_instant(to, request, 1), variant=variant,
                        ward=ward, surgeon=surgeon, sex=sex,
                        age_band=None if age_band is None else parse_age_band(age_band), apfel=apfel)


Cohort = Annotated[CohortFilter, Depends(cohort_filter)]
Unenrolled = Annotated[int, Query(ge=0, description="Patients who had the procedure but were never "
                                                    "enrolled (from theatre records), for coverage.")]


def _label(request: Request, user: Principal) -> Label:
    return request.app.state.audit.label_for(user)


def _audit(request: Request, session: SessionDep, cohort: CohortFilter, unenrolled: int) -> StoredAudit:
    pathway = pathway_of(request, cohort.pathway_id, cohort.pathway_version)
    return stored_audit(pathway, session=session, cohort=cohort, tz=request.app.state.audit.tz,
                        unenrolled=unenrolled)


def _record(session: SessionDep, user: Principal, resource: str) -> None:
    record_access(session, user, action="read", resource=resource, purpose=PURPOSE)
    session.commit()


@router.get("/compliance")
def read_compliance(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort,
                    unenrolled: Unenrolled = 0) -> dict[str, Any]:
    """Per element, phase and patient, overall, the share at >= the pathway's threshold, the trend."""
    body = compliance_json(_audit(request, session, cohort, unenrolled), _label(request, user),
                           request.app.state.audit.episode_for(user))
    _record(session, user, f"audit/{cohort.pathway_id}/compliance")
    return body


@router.get("/completeness")
def read_completeness(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort,
                      unenrolled: Unenrolled = 0) -> dict[str, Any]:
    """Coverage of the procedure population, missing data per element, the most undocumented."""
    audit = _audit(request, session, cohort, unenrolled)
    body = completeness_json(audit.completeness, {e.element_id: e.title for e in audit.elements})
    _record(session, user, f"audit/{cohort.pathway_id}/completeness")
    return body


def audited_episode(request: Request, session: SessionDep, user: Principal, key: str) -> AuditEpisode:
    """The episode `key` names for this user (a pseudonym unless they may re-identify), or 404."""
    enrolment_id = request.app.state.audit.enrolment_of(session, user, key)
    found = None if enrolment_id is None else episode(session=session, enrolment_id=enrolment_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no audited episode {key}")
    return found


@router.get("/patients/{key}")
def read_patient(request: Request, session: SessionDep, user: AuditUser, key: str) -> dict[str, Any]:
    """One episode's timeline from the stored results, with its outcomes (`key`: its episode key)."""
    found = audited_episode(request, session, user, key)
    enrolment_id = found.enrolment_id
    pathway = pathway_of(request, found.pathway_id, None)
    rows = episode_results(session=session, enrolment_ids=[enrolment_id])[enrolment_id]
    body = timeline_json(pathway, found, rows, episode_outcome(session=session, enrolment_id=enrolment_id),
                         _label(request, user), request.app.state.audit.episode_for(user))
    _record(session, user, f"enrolment/{enrolment_id}")
    return body


def _report_csv(request: Request, session: SessionDep, user: Principal, cohort: CohortFilter,
                unenrolled: int, kind: Literal["matrix", "summary", "declines"]) -> PlainTextResponse:
    pathway = pathway_of(request, cohort.pathway_id, cohort.pathway_version)
    cases = stored_cases(session=session, cohort=cohort, label=_label(request, user))
    report = audit_report(pathway, cases, procedures=len(cases) + unenrolled, tz=request.app.state.audit.tz)
    text = {"matrix": matrix_csv, "summary": summary_csv, "declines": declines_csv}[kind](report)
    _record(session, user, f"audit/{cohort.pathway_id}/export/{kind}")
    return PlainTextResponse(text, media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{cohort.pathway_id}-{kind}.csv"'})


@router.get("/export/matrix.csv", response_class=PlainTextResponse)
def export_matrix(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort,
                  unenrolled: Unenrolled = 0) -> PlainTextResponse:
    """The element x patient matrix (done, done-late, not-done, missing, excluded, n-a,
    n-a-declined) as `engine.audit_export` writes it."""
    return _report_csv(request, session, user, cohort, unenrolled, "matrix")


@router.get("/export/summary.csv", response_class=PlainTextResponse)
def export_summary(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort,
                   unenrolled: Unenrolled = 0) -> PlainTextResponse:
    """Per element, phase and overall: done, counted, percent, missing data, done late, not done."""
    return _report_csv(request, session, user, cohort, unenrolled, "summary")


@router.get("/export/declines.csv", response_class=PlainTextResponse)
def export_declines(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort,
                    unenrolled: Unenrolled = 0) -> PlainTextResponse:
    """Declines that made an element not applicable: patients by element, ward and reason."""
    return _report_csv(request, session, user, cohort, unenrolled, "declines")


@router.get("/measure")
def read_measure(request: Request, user: AuditUser, session: SessionDep,
                 pathway: Annotated[str, Query(max_length=200)],
                 version: int | None = None) -> dict[str, Any]:
    """The FHIR Measure generated from the pathway."""
    _record(session, user, f"audit/{pathway}/measure")
    return pathway_measure(pathway_of(request, pathway, version))


@router.get("/export/measure-report")
def export_measure_report(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort,
                          kind: Literal["summary", "subject-list"] = "summary") -> dict[str, Any]:
    """A FHIR MeasureReport (summary, or subject-list with one List per population)."""
    pathway = pathway_of(request, cohort.pathway_id, cohort.pathway_version)
    cases = stored_cases(session=session, cohort=cohort, label=_label(request, user))
    report = audit_report(pathway, cases, tz=request.app.state.audit.tz)
    tz = request.app.state.audit.tz
    now = datetime.now(UTC)
    start = cohort.start.astimezone(tz).date() if cohort.start else date(2000, 1, 1)
    end = (cohort.end - timedelta(days=1)).astimezone(tz).date() if cohort.end else now.astimezone(tz).date()
    _record(session, user, f"audit/{cohort.pathway_id}/export/measure-report")
    return measure_report(pathway, report, period_start=start, period_end=end, generated=now, kind=kind)
