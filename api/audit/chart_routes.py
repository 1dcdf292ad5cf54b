"""The CSV behind each audit chart: the same cohort filters, the same series, pseudonymised."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlmodel import Session

from api.access import record_access
from api.audit.routes import PURPOSE, AuditUser, Cohort, Unenrolled, pathway_of
from api.audit.series import CSVS, ChartData, chart_data
from api.auth import Principal
from api.deps import SessionDep
from api.errors import SIGNED_IN, problems
from store.audit_queries import CohortFilter
from store.audit_summary import StoredAudit, stored_audit

router = APIRouter(prefix="/audit", tags=["audit"], responses=SIGNED_IN | problems(404))


def cohort_charts(request: Request, session: Session, user: Principal, cohort: CohortFilter,
                  unenrolled: int) -> tuple[StoredAudit, ChartData]:
    """The cohort's audit and the series its charts plot, patients labelled for this user."""
    pathway = pathway_of(request, cohort.pathway_id, cohort.pathway_version)
    state = request.app.state.audit
    audit = stored_audit(pathway, session=session, cohort=cohort, tz=state.tz, unenrolled=unenrolled)
    return audit, chart_data(audit, session=session, cohort=cohort, tz=state.tz, label=state.label_for(user))


@router.get("/charts/{chart}.csv", response_class=PlainTextResponse)
def chart_csv(request: Request, session: SessionDep, user: AuditUser, cohort: Cohort,
              chart: Literal["p-chart", "heat-map", "length-of-stay"],
              unenrolled: Unenrolled = 0) -> PlainTextResponse:
    """The figures one dashboard chart plots: `p-chart` (month, eligible, compliant, limits),
    `heat-map` (element, month, n/N), `length-of-stay` (pseudonymous patient, compliance, days)."""
    _, data = cohort_charts(request, session, user, cohort, unenrolled)
    record_access(session, user, action="read", resource=f"audit/{cohort.pathway_id}/chart/{chart}",
                  purpose=PURPOSE)
    session.commit()
    return PlainTextResponse(CSVS[chart](data), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{cohort.pathway_id}-{chart}.csv"'})
