"""FHIR Subscription notifications in: authenticate, then read and parse, commit to the inbox, answer."""

import asyncio
import inspect
import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import IntakeDep, SettingsDep
from api.errors import FHIR_JSON, FhirJSONResponse, fhir_response, outcomes
from api.intake.batcher import IntakeBatcher, IntakeResult
from api.intake.notifier_auth import authenticate_any_notifier, authenticate_notifier
from fhir_adapters.notifications import (
    BadNotification,
    Notification,
    check_content_length,
    parse_notification,
    too_large,
)
from flows.settings import Settings

log = logging.getLogger(__name__)

# Every answer is an OperationOutcome: the acknowledgement (200) and each refusal.
ANSWERS = outcomes(200, 400, 401, 408, 413, 415, 422, 503)
router = APIRouter(prefix="/fhir/notifications", tags=["notifications"],
                   default_response_class=FhirJSONResponse, responses=ANSWERS)

# The body is read raw (authenticate first, then parse); the OpenAPI still says what it is.
NOTIFICATION_BODY = {"requestBody": {"required": False, "content": {
    media: {"schema": {"type": "object", "required": ["resourceType"],
                       "properties": {"resourceType": {"type": "string", "enum": ["Bundle", "Parameters"]}}}}
    for media in (FHIR_JSON, "application/json")}}}

SUBSCRIPTION_ID_HEADER = "X-Subscription-Id"
SECRET_HEADER = "X-Subscription-Secret"


@router.post("", openapi_extra=NOTIFICATION_BODY)
async def receive_notification(request: Request, settings: SettingsDep, intake: IntakeDep) -> JSONResponse:
    """A notification naming its subscription in the X-Subscription-Id header or its body."""
    return await _receive(request, settings, intake, None)


@router.post("/{subscription_id}", openapi_extra=NOTIFICATION_BODY)
async def receive_subscription_notification(
    subscription_id: str, request: Request, settings: SettingsDep, intake: IntakeDep
) -> JSONResponse:
    """A notification posted to the URL configured as the subscription's channel endpoint."""
    return await _receive(request, settings, intake, subscription_id)


async def _receive(
    request: Request, settings: Settings, intake: IntakeBatcher, path_id: str | None
) -> JSONResponse:
    subscription_id = _posted_for(path_id, request.headers.get(SUBSCRIPTION_ID_HEADER))
    # The credential is checked before a byte of the body is read: unauthenticated work is nil.
    if subscription_id is not None:
        _authenticate(request, settings, subscription_id)
    else:
        authenticate_any_notifier(subscriptions=settings.subscriptions,
                                  authorization=request.headers.get("authorization"),
                                  secret_header=request.headers.get(SECRET_HEADER))
    check_content_length(request.headers.get("content-length"), max_bytes=settings.notification_max_bytes)
    body = await _read_body(request, settings.notification_max_bytes, settings.http.body_seconds)
    received_at = datetime.now(UTC)
    notification = parse_notification(
        body,
        subscription_id=subscription_id,
        received_at=received_at,
        content_type=request.headers.get("content-type"),
        max_bytes=settings.notification_max_bytes,
    )
    if subscription_id is None:
        _authenticate(request, settings, notification.subscription_id)
    result = await intake.take_in(notification, at=received_at)
    _log(notification, result)
    if result.to_process:
        await _emit(request, result)
    return fhir_response(200, "informational", _summary(notification, result), severity="information")


def _posted_for(path_id: str | None, header_id: str | None) -> str | None:
    if path_id and header_id and path_id != header_id:
        raise BadNotification(
            400,
            f"the {SUBSCRIPTION_ID_HEADER} header names another subscription than the URL path",
            issue_code="business-rule",
        )
    return path_id or header_id or None


def _authenticate(request: Request, settings: Settings, subscription_id: str) -> None:
    authenticate_notifier(
        subscriptions=settings.subscriptions,
        subscription_id=subscription_id,
        authorization=request.headers.get("authorization"),
        secret_header=request.headers.get(SECRET_HEADER),
    )


async def _read_body(request: Request, max_bytes: int, seconds: float) -> bytes:
    """The body, refused as soon as it passes the limit (Content-Length may be absent or lie), or
    when it has not all come within `seconds` (a half-sent body holds nothing longer)."""
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    raise too_large(max_bytes)
    except TimeoutError:
        raise BadNotification(408, f"the body did not arrive within {seconds:g} s",
                              issue_code="timeout") from None
    return bytes(body)


async def _emit(request: Request, result: IntakeResult) -> None:
    """Tell the runtime new events to process are committed (app.state.on_event_stored); never
    fails the ack."""
    try:
        outcome = request.app.state.on_event_stored(result.to_process)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        log.exception("on_event_stored hook failed; the events are stored and will be drained anyway")


def _log(notification: Notification, result: IntakeResult) -> None:
    for first, last in result.gaps:
        log.warning(
            "subscription %s skipped events %d-%d; catch-up recorded",
            notification.subscription_id,
            first,
            last,
        )
    if not log.isEnabledFor(logging.INFO):
        return
    resources = ", ".join(
        f"{e.resource_type}/{e.resource_id}" for e in notification.events if e.resource_type is not None
    )
    log.info(
        "notification %s for subscription %s: %d stored, %d duplicate(s) %s",
        notification.type,
        notification.subscription_id,
        len(result.created_ids),
        result.duplicates,
        resources,
    )


def _summary(notification: Notification, result: IntakeResult) -> str:
    if not notification.events:
        return f"{notification.type} received"
    gaps = (
        f"; events {', '.join(f'{a}-{b}' for a, b in result.gaps)} missing, catch-up scheduled"
        if result.gaps
        else ""
    )
    return f"{len(result.created_ids)} event(s) stored, {result.duplicates} duplicate(s){gaps}"
