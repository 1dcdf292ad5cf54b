"""POSTed FHIR Subscription notifications -> inbox events, or a 4xx naming what is wrong.

Three shapes arrive at the notification endpoint:

- an empty body: an R4 rest-hook ping (`Subscription.channel.payload` absent), which
  only says "something matching the criteria changed" and needs the subscription id
  from the `X-Subscription-Id` header or the URL;
- a FHIR resource: an R4 rest-hook with payload, one event;
- a `history` Bundle led by a SubscriptionStatus `Parameters`: the R4 Subscriptions
  Backport (handshake, heartbeat, event-notification, query-status), see `backport.py`.

Status codes: 413 too large, 415 not a JSON media type, 400 not JSON or no subscription
named, 422 JSON that is not a notification we accept (valid FHIR R4 checked with
fhir.resources.R4B). Pure functions: time is a parameter, nothing is stored here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir_adapters.backport import parse_backport_bundle
from fhir_adapters.errors import describe_json_error
from fhir_adapters.inbox_events import inbox_event_for_resource, ping_event
from fhir_adapters.notification_types import (
    BadNotification,
    Notification,
    NotificationType,
    resource_model,
    validate_resource,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BadNotification",
    "Notification",
    "NotificationType",
    "check_content_length",
    "check_content_type",
    "parse_notification",
]

DEFAULT_MAX_BYTES = 1024 * 1024
JSON_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})


def check_content_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON (no Content-Type at all is taken as JSON)."""
    if not content_type:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        shown = media_type if len(media_type) <= 64 and media_type.isprintable() else "(unreadable)"
        raise BadNotification(
            415,
            f"Content-Type {shown} is not supported: send application/fhir+json",
            issue_code="not-supported",
        )


def check_content_length(content_length: str | None, *, max_bytes: int) -> None:
    """413 when the declared body size is over the limit, before reading any of it."""
    if content_length is None:
        return
    if not content_length.strip().isdigit():
        raise BadNotification(400, "Content-Length is not a number of bytes", issue_code="structure")
    if int(content_length) > max_bytes:
        raise too_large(max_bytes)


def too_large(max_bytes: int) -> BadNotification:
    return BadNotification(
        413, f"the notification body is larger than the {max_bytes}-byte limit", issue_code="too-costly"
    )


def parse_notification(
    body: bytes,
    *,
    subscription_id: str | None,
    received_at: datetime,
    content_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Notification:
    """The notification a body carries; `subscription_id` comes from the header or URL, if any."""
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    if not body.strip():
        subscription = _required(subscription_id, "an empty body is an R4 rest-hook ping")
        return Notification(
            type=NotificationType.PING,
            subscription_id=subscription,
            events=(ping_event(subscription, received_at=received_at),),
        )
    check_content_type(content_type)
    document = _json_object(body)
    resource_model(document.get("resourceType"), "")
    if document["resourceType"] == "Bundle":
        return parse_backport_bundle(document, subscription_id=subscription_id, received_at=received_at)
    return _rest_hook_resource(document, subscription_id)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadNotification(
            400, f"the notification {describe_json_error(error)}", issue_code="structure"
        ) from None
    except RecursionError:
        raise BadNotification(
            400, "the notification body is JSON nested too deeply", issue_code="too-costly"
        ) from None
    if not isinstance(document, dict):
        kind = "an array" if isinstance(document, list) else "a JSON scalar"
        raise BadNotification(
            422, f"the notification body is {kind}, not a FHIR resource object", issue_code="structure"
        )
    return document


def _rest_hook_resource(resource: Mapping[str, Any], subscription_id: str | None) -> Notification:
    kind = resource["resourceType"]
    subscription = _required(subscription_id, f"a resource body ({kind}) is an R4 rest-hook payload")
    validate_resource(resource, kind)
    if not isinstance(resource.get("id"), str):
        raise BadNotification(
            422,
            f"{kind}.id is missing: a notification payload must carry the resource's id",
            issue_code="required",
        )
    return Notification(
        type=NotificationType.RESOURCE,
        subscription_id=subscription,
        events=(inbox_event_for_resource(resource, source=subscription),),
    )


def _required(subscription_id: str | None, what: str) -> str:
    if not subscription_id:
        raise BadNotification(
            400,
            f"{what} and needs its subscription id, in the X-Subscription-Id "
            "header or the URL path /fhir/notifications/{subscription_id}",
            issue_code="required",
        )
    return subscription_id
