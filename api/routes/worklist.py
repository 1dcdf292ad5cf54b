"""The nurses' worklist: open tasks for a ward, and complete / decline / reassign with EHR write-back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session

from api.access import record_access, require_ward
from api.auth import CurrentUser, Principal
from api.deps import SessionDep
from api.worklist_models import (
    ActionResultPublic,
    CompleteRequest,
    DeclineRequest,
    ReassignRequest,
    WorklistPublic,
)
from api.worklist_view import item, parse_window
from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirError
from flows import worklist_actions
from flows.worklist_actions import ActionClosed, TaskChanged, WorklistWriter
from store.errors import ActionNotFound
from store.locks import patient_lock
from store.models import PlannedAction
from store.worklist import action_with_enrolment, open_actions

router = APIRouter(prefix="/worklist", tags=["worklist"])


def clock_now(request: Request) -> datetime:
    """The runtime's clock when one is attached (a simulated one in the demo), else real time."""
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else datetime.now(UTC)


async def get_writer(request: Request) -> AsyncIterator[WorklistWriter]:
    """The writer for this request, with a FHIR client when Tasks live on a FHIR server."""
    state = request.app.state.worklist
    if state.settings.fhir_base_url is None:
        yield WorklistWriter(
            pathways=state.pathways, fhir=None, evidence_system=state.settings.evidence_identifier_system
        )
        return
    async with FhirClient(state.settings.fhir_base_url, max_retries=1) as fhir:
        yield WorklistWriter(
            pathways=state.pathways, fhir=fhir, evidence_system=state.settings.evidence_identifier_system
        )


WriterDep = Annotated[WorklistWriter, Depends(get_writer)]


@router.get("", response_model=WorklistPublic)
def read_worklist(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ward: Annotated[str | None, Query(max_length=100)] = None,
    role: Annotated[str | None, Query(max_length=50)] = None,
    window: Annotated[str | None, Query(max_length=10)] = None,
) -> WorklistPublic:
    """Open tasks on the ward (or the caller's wards) opening within `window`, overdue first."""
    state = request.app.state.worklist
    try:
        ahead = parse_window(window, state.settings.default_window_hours)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    wards = [ward] if ward else sorted(user.wards)
    for one in wards:
        require_ward(session, user, one, purpose="worklist view")
    now = clock_now(request)
    rows = [
        row
        for one in wards
        for row in open_actions(session=session, ward=one, until=now + ahead, roles=(role,) if role else None)
    ]
    items = [
        item(
            action,
            enrolment,
            pathway=state.pathways.get(enrolment.pathway_id),
            element=state.element(enrolment.pathway_id, action.element_id),
            now=now,
            tz=state.tz,
        )
        for action, enrolment in rows
    ]
    items.sort(key=lambda i: (i.status not in ("late", "overdue"), i.due is None, i.due or now))
    for patient in sorted({i.patient_ref for i in items}):
        record_access(session, user, action="read", resource=f"{patient}/worklist", purpose="worklist view")
    session.commit()
    return WorklistPublic(ward=ward, now=now, items=items)


@router.post("/{key}/complete", response_model=ActionResultPublic)
async def complete_task(
    request: Request,
    key: str,
    body: CompleteRequest,
    session: SessionDep,
    user: CurrentUser,
    writer: WriterDep,
) -> ActionResultPublic:
    """Done: the Task completed and the evidence written in the EHR, then the store."""
    return await _act(
        session,
        user,
        key,
        "complete",
        lambda: worklist_actions.complete(
            writer, session, key=key, by=user.subject, at=clock_now(request), value=body.value
        ),
    )


@router.post("/{key}/decline", response_model=ActionResultPublic)
async def decline_task(
    request: Request,
    key: str,
    body: DeclineRequest,
    session: SessionDep,
    user: CurrentUser,
    writer: WriterDep,
) -> ActionResultPublic:
    """Not done, with a coded reason: the Task cancelled with statusReason, then the store."""
    return await _act(
        session,
        user,
        key,
        "decline",
        lambda: worklist_actions.decline(
            writer,
            session,
            key=key,
            by=user.subject,
            at=clock_now(request),
            reason=body.reason,
            text=body.text,
        ),
    )


@router.post("/{key}/reassign", response_model=ActionResultPublic)
async def reassign_task(
    request: Request,
    key: str,
    body: ReassignRequest,
    session: SessionDep,
    user: CurrentUser,
    writer: WriterDep,
) -> ActionResultPublic:
    """Given to another role, in the EHR's Task and in the store."""
    return await _act(
        session,
        user,
        key,
        "reassign",
        lambda: worklist_actions.reassign(writer, session, key=key, role=body.role, at=clock_now(request)),
    )


async def _act(session: Session, user: Principal, key: str, verb: str, run: Any) -> ActionResultPublic:
    """Check the ward, run the action, audit it and commit; errors become clear HTTP answers."""
    try:
        action, enrolment = action_with_enrolment(session=session, key=key)
    except ActionNotFound:
        raise HTTPException(status_code=404, detail="no such task") from None
    require_ward(session, user, action.ward or enrolment.ward or "", purpose=f"worklist {verb}")
    resource = f"{enrolment.patient_ref}/PlannedAction/{key}"
    try:
        # The patient's lock across processes (store.locks): no apply runs beside the action.
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        async with patient_lock(engine, enrolment.patient_ref.split("/", 1)[1]):
            row: PlannedAction = await run()
            session.flush()
    except (TaskChanged, ActionClosed) as error:
        return _refuse(session, user, resource, verb, 409, str(error))
    except StaleDataError:  # an apply changed the action since this request read it
        return _refuse(session, user, resource, verb, 409, "the task changed meanwhile; reload")
    except FhirError:
        return _refuse(session, user, resource, verb, 502, "the EHR did not accept the change; try again")
    record_access(session, user, action=verb, resource=resource, purpose=f"worklist {verb}")
    session.commit()
    return ActionResultPublic(
        key=row.key, status=row.status, role=row.role, fhir_task_id=row.fhir_id, fhir_version=row.fhir_version
    )


def _refuse(session: Session, user: Principal, resource: str, verb: str, status: int, detail: str) -> Any:
    session.rollback()
    record_access(session, user, action=verb, resource=resource, purpose=f"worklist {verb}", outcome="error")
    session.commit()
    raise HTTPException(status_code=status, detail=detail)
