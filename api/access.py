"""Who may do what, where: the permission matrix (role x route x ward), and the access log.

The matrix is the one place access is decided; the routes ask it through `allowed(route)` (the
role) and `require_ward` (the ward). The README's "Permissions" section is `matrix_markdown()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.auth import CurrentUser, Principal
from api.deps import EngineDep
from store.access_log import record_access_entries, record_access_entry


class Route(StrEnum):
    """What a caller asks to do (one name per group of routes guarded alike)."""

    WORKLIST_READ = "GET /worklist, GET /ui/worklist data"
    TASK_COMPLETE = "POST /worklist/{key}/complete"
    TASK_DECLINE = "POST /worklist/{key}/decline"
    TASK_REASSIGN = "POST /worklist/{key}/reassign"
    PATIENT_PATHWAY_READ = "GET /patients/{id}/pathway, GET /ui/patients/{id} fragments"
    AUDIT_READ = "GET /audit/*, GET /ui/audit/* fragments"
    ACCESS_LOG_READ = "GET /admin/audit"
    RUNTIME_READ = "GET /runtime/status"
    CDS_DISCOVERY = "GET /cds-services"
    CDS_HOOK = "POST /cds-services/{id}"
    CDS_FEEDBACK = "POST /cds-services/{id}/feedback"


class Scope(StrEnum):
    """Where a permission holds: the wards in the user's token, any ward, or not ward-bound."""

    OWN_WARD = "own ward"
    ANY_WARD = "any ward"
    ALL = "yes"


CLINICAL_ROLES = ("nurse", "charge_nurse", "physiotherapist", "anaesthetist")
# Not a user role: the EHR system itself, signed in by the JWT of a CDS Hooks call (api/cds/auth.py).
# No user token carries it into a CDS route, and it grants no user route.
EHR_SYSTEM = "ehr_system"
ROLE_ORDER = (*CLINICAL_ROLES, "quality", "admin", EHR_SYSTEM)
WARD_ROUTES = frozenset({Route.WORKLIST_READ, Route.TASK_COMPLETE, Route.TASK_DECLINE, Route.TASK_REASSIGN,
                         Route.PATIENT_PATHWAY_READ})

# Least privilege: clinical roles act on their own wards' tasks; quality reads the (pseudonymous)
# audit only; admin runs the service and may look at any ward's worklist, but does no clinical act.
# One patient's identified pathway: the clinical roles of the enrolment's ward, and admin; quality
# sees it pseudonymised, in the audit's drill-down.
PERMISSIONS: dict[Route, dict[str, Scope]] = {
    Route.WORKLIST_READ: {**{r: Scope.OWN_WARD for r in CLINICAL_ROLES}, "admin": Scope.ANY_WARD},
    Route.TASK_COMPLETE: {r: Scope.OWN_WARD for r in CLINICAL_ROLES},
    Route.TASK_DECLINE: {r: Scope.OWN_WARD for r in CLINICAL_ROLES},
    Route.TASK_REASSIGN: {r: Scope.OWN_WARD for r in CLINICAL_ROLES},
    Route.PATIENT_PATHWAY_READ: {**{r: Scope.OWN_WARD for r in CLINICAL_ROLES}, "admin": Scope.ANY_WARD},
    Route.AUDIT_READ: {"quality": Scope.ALL, "admin": Scope.ALL},
    Route.ACCESS_LOG_READ: {"admin": Scope.ALL},
    Route.RUNTIME_READ: {"admin": Scope.ALL},
    Route.CDS_DISCOVERY: {EHR_SYSTEM: Scope.ALL},
    Route.CDS_HOOK: {EHR_SYSTEM: Scope.ALL},
    Route.CDS_FEEDBACK: {EHR_SYSTEM: Scope.ALL},
}


def may(user: Principal, route: Route, ward: str | None = None) -> bool:
    """True when one of the user's roles grants `route` (on `ward`, for ward-bound routes)."""
    for role in user.roles:
        scope = PERMISSIONS[route].get(role)
        if scope is Scope.ALL or scope is Scope.ANY_WARD:
            return True
        if scope is Scope.OWN_WARD and (ward is None or ward in user.wards):
            return True
    return False


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


def record_accesses(session: Session, user: Principal, *, action: str, resources: Sequence[str],
                    purpose: str) -> None:
    """`record_access` for many resources at once (one statement)."""
    record_access_entries(session=session, actor=user.subject, action=action, resources=resources,
                          purpose=purpose, at=datetime.now(UTC))


def deny(session: Session, user: Principal, *, resource: str, purpose: str, detail: str) -> HTTPException:
    """The refusal, recorded as denied in the access log (committed), to raise."""
    record_access(session, user, action="read", resource=resource, purpose=purpose, outcome="denied")
    session.commit()
    return HTTPException(status_code=403, detail=detail)


def allowed(route: Route) -> Callable[..., Any]:
    """A dependency: the caller, if one of their roles grants `route` somewhere; else 403 (logged)."""

    async def dependency(request: Request, user: CurrentUser, db: EngineDep) -> Principal:
        if any(role in PERMISSIONS[route] for role in user.roles):
            return user  # no session opened: the allowed path costs no connection
        roles = ", ".join(sorted(PERMISSIONS[route]))

        def refuse() -> HTTPException:
            with Session(db) as session:
                return deny(session, user, resource=request.url.path, purpose=route.value,
                            detail=f"this needs one of the roles: {roles}")

        raise await run_in_threadpool(refuse)

    return dependency


def require_ward(session: Session, user: Principal, ward: str, *, route: Route, purpose: str) -> None:
    """403 (recorded as denied) when the user's roles do not grant `route` on `ward`."""
    if may(user, route, ward):
        return
    raise deny(session, user, resource=f"ward/{ward}", purpose=purpose,
               detail=f"you are not assigned to ward {ward}")


def matrix_markdown() -> str:
    """The matrix as the README's table: one row per route, one column per role."""
    lines = ["| Route | " + " | ".join(ROLE_ORDER) + " |", "|---|" + "---|" * len(ROLE_ORDER)]
    for route in Route:
        cells = [PERMISSIONS[route].get(role, "no") for role in ROLE_ORDER]
        lines.append(f"| `{route.value}` | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)
