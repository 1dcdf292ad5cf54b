"""The nurses' worklist: open tasks for a ward, and complete / decline / reassign with EHR write-back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, NoReturn

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session

from api.access import Route, allowed, record_access, record_accesses, require_ward
from api.auth import CurrentUser, Principal
from api.deps import EngineDep, SessionDep
from api.errors import SIGNED_IN, problems
from api.smart.writeback import user_task_client
from api.worklist.models import (
    ActionResultPublic,
    CompleteRequest,
    DeclineRequest,
    ReassignRequest,
    WorklistPublic,
)
from api.worklist.paging import MAX_PAGE, PAGE_SIZE, decode_cursor, one_page
from api.worklist.view import WINDOW_PATTERN, item, parse_window
from fhir_adapters.errors import FhirAuthError, FhirError
from flows import worklist_actions
from flows.worklist_actions import ActionClosed, TaskChanged, UnknownDeclineReason, WorklistWriter
from store.db import session_scope
from store.errors import ActionNotFound
from store.locks import patient_lock
from store.models import Enrolment, PlannedActionRow
from store.worklist import count_open, open_actions

router = APIRouter(prefix="/worklist", tags=["worklist"], responses=SIGNED_IN)
# What an action on one task can meet beyond sign-in: no such task, a race, the EHR refusing.
ACTION_RESPONSES = problems(400, 404, 409, 502)


def clock_now(request: Request) -> datetime:
    """The runtime's clock when one is attached (a simulated one in the demo), else real time."""
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


async def get_writer(request: Request, user: CurrentUser) -> AsyncIterator[WorklistWriter]:
    """The writer for this request: the app's FHIR client for Tasks (built from the settings with
    the runtime's auth), the user's own EHR token (SMART launch, when configured), or None when
    the store is the worklist."""
    state = request.app.state.worklist
    async with user_task_client(request, user) as own:
        yield WorklistWriter(pathways=state.pathways, fhir=own or state.tasks,
                             evidence_system=state.settings.evidence_identifier_system)


WriterDep = Annotated[WorklistWriter, Depends(get_writer)]
Reader = Annotated[Principal, Depends(allowed(Route.WORKLIST_READ))]
Completer = Annotated[Principal, Depends(allowed(Route.TASK_COMPLETE))]
Decliner = Annotated[Principal, Depends(allowed(Route.TASK_DECLINE))]
Reassigner = Annotated[Principal, Depends(allowed(Route.TASK_REASSIGN))]


@router.get("", response_model=WorklistPublic)
def read_worklist(
    request: Request,
    session: SessionDep,
    user: Reader,
    ward: Annotated[str | None, Query(max_length=100)] = None,
    role: Annotated[str | None, Query(max_length=50)] = None,
    window: Annotated[str | None, Query(pattern=WINDOW_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="tasks per page")] = PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=1000, description="the last page's next_cursor")] = None,
) -> Response:
    """Open tasks on the ward (or the caller's wards) opening within `window`: overdue and due
    soonest first, `limit` at a time; `next_cursor` fetches the next page, `total` counts them all."""
    state = request.app.state.worklist
    try:
        ahead = parse_window(window, state.settings.default_window_hours)
        after = None if cursor is None else decode_cursor(cursor)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    wards = [ward] if ward else sorted(user.wards)
    for one in wards:
        require_ward(session, user, one, route=Route.WORKLIST_READ, purpose="worklist view")
    now = clock_now(request)
    roles = (role,) if role else None
    rows, next_cursor = one_page((open_actions(session=session, ward=one, until=now + ahead, roles=roles,
                                               limit=limit + 1, after=after) for one in wards), limit)
    total = sum(count_open(session=session, ward=one, until=now + ahead, roles=roles) for one in wards)
    items = [item(action, enrolment, pathway=state.pathways.get(enrolment.pathway_id),
                  element=state.element(enrolment.pathway_id, action.element_id), now=now, tz=state.tz)
             for action, enrolment in rows]
    record_accesses(session, user, action="read", purpose="worklist view",
                    resources=[f"{patient}/worklist" for patient in sorted({i.patient_ref for i in items})])
    session.commit()
    body = WorklistPublic(ward=ward, now=now, items=items, total=total, next_cursor=next_cursor)
    # Serialised once, by pydantic's JSON encoder: FastAPI would validate the model again.
    return Response(body.model_dump_json(), media_type="application/json")


@router.post("/{key}/complete", response_model=ActionResultPublic, responses=ACTION_RESPONSES)
async def complete_task(
    request: Request, key: str, body: CompleteRequest, db: EngineDep, user: Completer, writer: WriterDep
) -> ActionResultPublic:
    """Done: the Task completed and the evidence written in the EHR, then the store."""
    at = clock_now(request)
    return await _act(
        db, user, key, Route.TASK_COMPLETE,
        lambda action, enrolment, also: worklist_actions.complete(
            writer, db, action, enrolment, by=user.subject, at=at, value=body.value, also=also
        ),
    )


@router.post("/{key}/decline", response_model=ActionResultPublic, responses=ACTION_RESPONSES)
async def decline_task(
    request: Request, key: str, body: DeclineRequest, db: EngineDep, user: Decliner, writer: WriterDep
) -> ActionResultPublic:
    """Not done, with a coded reason: the Task cancelled with statusReason, then the store."""
    at = clock_now(request)
    return await _act(
        db, user, key, Route.TASK_DECLINE,
        lambda action, enrolment, also: worklist_actions.decline(
            writer, db, action, by=user.subject, at=at, reason=body.reason, text=body.text, also=also,
            reasons=writer.decline_reasons(enrolment.pathway_id),
        ),
    )


@router.post("/{key}/reassign", response_model=ActionResultPublic, responses=ACTION_RESPONSES)
async def reassign_task(
    request: Request, key: str, body: ReassignRequest, db: EngineDep, user: Reassigner, writer: WriterDep
) -> ActionResultPublic:
    """Given to another role, in the EHR's Task and in the store."""
    at = clock_now(request)
    return await _act(
        db, user, key, Route.TASK_REASSIGN,
        lambda action, _enrolment, also: worklist_actions.reassign(
            writer, db, action, role=body.role, at=at, also=also
        ),
    )


Run = Callable[[PlannedActionRow, Enrolment, Callable[[Session], None]], Awaitable[PlannedActionRow]]


async def _act(db: Engine, user: Principal, key: str, route: Route, run: Run) -> ActionResultPublic:
    """Check the ward, run the action (audited in its own transaction); errors become clear answers.

    Database work runs in worker threads and no transaction is open while the EHR is called.
    """
    try:
        action, enrolment = await run_in_threadpool(worklist_actions.read_action, db, key)
    except ActionNotFound:
        raise HTTPException(status_code=404, detail="no such task") from None
    verb = route.name.removeprefix("TASK_").lower()
    ward = action.ward or enrolment.ward or ""
    await run_in_threadpool(_require_ward, db, user, ward, route)
    resource = f"{enrolment.patient_ref}/PlannedAction/{key}"

    def audit(session: Session) -> None:
        record_access(session, user, action=verb, resource=resource, purpose=f"worklist {verb}")

    try:
        # The patient's lock across processes (store.locks): no apply runs beside the action.
        async with patient_lock(db, enrolment.patient_ref.split("/", 1)[1]):
            row = await run(action, enrolment, audit)
    except (TaskChanged, ActionClosed) as error:
        await _refuse(db, user, resource, verb, 409, str(error))
    except UnknownDeclineReason as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    except StaleDataError:  # an apply changed the action since this request read it
        await _refuse(db, user, resource, verb, 409, "the task changed meanwhile; reload")
    except FhirAuthError:
        await _refuse(db, user, resource, verb, 502,
                      "the EHR refused the engine's credentials (check ERAS_FHIR_AUTH); nothing was saved")
    except FhirError:
        await _refuse(db, user, resource, verb, 502, "the EHR did not accept the change; try again")
    return ActionResultPublic(
        key=row.key, status=row.status, role=row.role, fhir_task_id=row.fhir_id, fhir_version=row.fhir_version
    )


def _require_ward(db: Engine, user: Principal, ward: str, route: Route) -> None:
    with Session(db) as session:
        require_ward(session, user, ward, route=route, purpose=f"worklist {route.name.lower()}")


async def _refuse(
    db: Engine, user: Principal, resource: str, verb: str, status: int, detail: str
) -> NoReturn:
    def record() -> None:
        with session_scope(db) as session:
            record_access(session, user, action=verb, resource=resource, purpose=f"worklist {verb}",
                          outcome="error")

    await run_in_threadpool(record)
    raise HTTPException(status_code=status, detail=detail)
