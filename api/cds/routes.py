"""`/cds-services`: discovery, the three hooks, and feedback (an accepted enrolment suggestion enrols)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.access import Route, record_access
from api.auth import Principal
from api.cds import cards
from api.cds.auth import ehr_allowed
from api.cds.reads import EhrUnavailable, check_fhir_server, hook_resources
from api.cds.services import PREFETCH, Feedback, HookRequest, Service, discovery
from api.cds.status import active_enrolments, open_before_discharge, pathway_status
from api.errors import problems
from flows.cds_enrolment import accept_suggestions, proposed_enrolments, remember_suggestions
from store.models import CdsSuggestion

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"], responses=problems(400, 401, 403, 404, 422))
Card = dict[str, Any]


@router.get("")
async def list_services(
        _ehr: Annotated[Principal, Depends(ehr_allowed(Route.CDS_DISCOVERY))]) -> dict[str, Any]:
    """The discovery document: the services, their hooks and prefetch templates."""
    return discovery()


@router.post("/{service_id}")
async def call_hook(service_id: str, hook: HookRequest, request: Request,
                    ehr: Annotated[Principal, Depends(ehr_allowed(Route.CDS_HOOK))]) -> dict[str, Any]:
    """The cards for one hook call; a slow or failing EHR gives a degraded card, never an error."""
    service = _service(service_id)
    if hook.hook != service.value:
        raise HTTPException(status_code=400, detail=f"this service answers the {service.value} hook")
    check_fhir_server(hook, request.app.state.cds.ehr_base)
    if hook.patient_id is None:
        raise HTTPException(status_code=400, detail="context.patientId is required")
    call = Call(request, hook, ehr, service)
    return {"cards": await HANDLERS[service](call)}


@router.post("/{service_id}/feedback")
async def feedback(service_id: str, body: Feedback, request: Request,
                   ehr: Annotated[Principal, Depends(ehr_allowed(Route.CDS_FEEDBACK))]) -> dict[str, Any]:
    """Accepted enrolment suggestions enrol (once); other feedback is acknowledged."""
    _service(service_id)
    accepted = [(entry.card, s.id) for entry in body.feedback if entry.outcome == "accepted"
                for s in entry.accepted_suggestions]
    state = request.app.state.cds

    def accept() -> None:
        results = accept_suggestions(request.app.state.engine, state.pathways, accepted,
                                     by=f"cds:{ehr.subject}", now=datetime.now(UTC))
        with Session(request.app.state.engine) as session:
            for enrolment, created in results:
                record_access(session, ehr, action="write" if created else "read",
                              resource=enrolment.patient_ref, purpose="CDS Hooks: enrolment accepted")
            session.commit()

    await run_in_threadpool(accept)
    return {}


class Call:
    """One hook call: the request, its body, the calling EHR and where the pathway view is launched."""

    def __init__(self, request: Request, hook: HookRequest, ehr: Principal, service: Service) -> None:
        self.request, self.hook, self.ehr, self.service = request, hook, ehr, service
        self.state = request.app.state.cds
        self.engine = request.app.state.engine
        self.patient_id: str = hook.patient_id or ""
        base = self.state.settings.public_url or str(request.base_url)
        self.launch_url = base.rstrip("/") + "/launch"

    async def resources(self) -> dict[str, Any]:
        return await hook_resources(self.hook, PREFETCH[self.service],
                                    budget=self.state.settings.budget_seconds,
                                    transport=self.state.fhir_transport)

    def log_read(self, session: Session) -> None:
        record_access(session, self.ehr, action="read", resource=f"Patient/{self.patient_id}",
                      purpose=f"CDS Hooks {self.service.value}")
        session.commit()


async def _patient_view(call: Call) -> list[Card]:
    def statuses() -> list[Card]:
        with Session(call.engine) as session:
            call.log_read(session)
            now = datetime.now(UTC)
            return [cards.status_card(pathway_status(session, e, call.state.pathways[e.pathway_id], now),
                                      launch_url=call.launch_url, tz=call.state.tz)
                    for e in active_enrolments(session, call.patient_id, call.state.pathways)]

    stored = asyncio.ensure_future(run_in_threadpool(statuses))  # the store is read while the EHR is
    try:
        found = await call.resources()
    except EhrUnavailable:
        await stored
        return [cards.degraded_card(call.launch_url)]
    status_cards = await stored
    if found["patient"] is None:
        return []  # a patient the EHR does not know: nothing to say
    return status_cards or [cards.not_enrolled_card()]


async def _encounter_discharge(call: Call) -> list[Card]:
    try:
        found = await call.resources()
    except EhrUnavailable:
        return [cards.degraded_card(call.launch_url)]
    encounter = found["encounter"]
    subject = ((encounter or {}).get("subject") or {}).get("reference")
    if found["patient"] is None or subject != f"Patient/{call.patient_id}":
        return []

    def open_items() -> list[Card]:
        with Session(call.engine) as session:
            call.log_read(session)
            items = [item for e in active_enrolments(session, call.patient_id, call.state.pathways)
                     for item in open_before_discharge(session, e, call.state.pathways[e.pathway_id])]
        return [cards.discharge_card(items, launch_url=call.launch_url)] if items else []

    return await run_in_threadpool(open_items)


async def _order_sign(call: Call) -> list[Card]:
    bundle = call.hook.context.get("draftOrders") or {}
    orders = [e.get("resource") or {} for e in bundle.get("entry") or [] if isinstance(e, dict)]
    proposals = proposed_enrolments(orders, call.patient_id, call.state.pathways)
    if not proposals:
        return []

    def suggest() -> list[Card]:
        with Session(call.engine) as session:
            call.log_read(session)
            active = active_enrolments(session, call.patient_id, call.state.pathways)
        enrolled = {e.pathway_id for e in active}
        out, rows = [], []
        for proposal in (p for p in proposals if p.pathway.id not in enrolled):
            card = cards.enrolment_card(proposal.pathway, proposal.variant,
                                        suggestion_uuid=str(uuid4()), card_uuid=str(uuid4()))
            rows.append(CdsSuggestion(
                uuid=card["suggestions"][0]["uuid"], card_uuid=card["uuid"],
                patient_ref=f"Patient/{call.patient_id}", pathway_id=proposal.pathway.id,
                variant=proposal.variant, created_at=datetime.now(UTC)))
            out.append(card)
        remember_suggestions(call.engine, rows)
        return out

    return await run_in_threadpool(suggest)


HANDLERS: dict[Service, Callable[[Call], Awaitable[list[Card]]]] = {
    Service.PATIENT_VIEW: _patient_view,
    Service.ORDER_SIGN: _order_sign,
    Service.ENCOUNTER_DISCHARGE: _encounter_discharge,
}


def _service(service_id: str) -> Service:
    try:
        return Service(service_id)
    except ValueError:
        raise HTTPException(status_code=404, detail=f"no CDS service '{service_id}'") from None
