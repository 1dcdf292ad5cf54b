"""R4 Subscriptions Backport notifications: a history Bundle led by a SubscriptionStatus Parameters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_adapters.inbox_events import (
    inbox_event_for_resource,
    ping_event,
    split_reference,
    subscription_event,
)
from fhir_adapters.notification_types import (
    BadNotification,
    Notification,
    NotificationType,
    validate_resource,
)
from store.models import InboxEventCreate

STATUS_PATH = "Bundle.entry[0].resource"
_INTEGER_VALUES = ("valueInteger", "valueUnsignedInt", "valuePositiveInt", "valueInteger64")
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_CODE = re.compile(r"^[A-Za-z0-9\-]{1,32}$")


@dataclass
class _Status:
    """The parameters of a SubscriptionStatus that intake uses."""

    type: NotificationType
    subscription_id: str | None = None
    status: str | None = None
    topic: str | None = None
    events_since_start: int | None = None
    error: str | None = None
    events: list[tuple[int, str | None]] = field(default_factory=list)


def parse_backport_bundle(
    bundle: Mapping[str, Any], *, subscription_id: str | None, received_at: datetime
) -> Notification:
    """The notification in a Backport Bundle, or BadNotification naming what is wrong."""
    entries = _check_envelope(bundle)
    validate_resource(bundle, "Bundle")
    status = _read_status(entries[0]["resource"])
    subscription = _subscription(status.subscription_id, subscription_id)
    events: tuple[InboxEventCreate, ...] = ()
    if status.type == NotificationType.EVENT_NOTIFICATION:
        events = _events(status, subscription, entries[1:], received_at)
    return Notification(
        type=status.type,
        subscription_id=subscription,
        events=events,
        status=status.status,
        topic=status.topic,
        events_since_start=status.events_since_start,
        error=status.error,
    )


def _check_envelope(bundle: Mapping[str, Any]) -> list[Any]:
    kind = bundle.get("type")
    if kind != "history":
        shown = repr(kind) if isinstance(kind, str) and _CODE.match(kind) else "missing or unreadable"
        raise BadNotification(
            422,
            f"Bundle.type is {shown}: a notification Bundle must be of type "
            "history (R4 Subscriptions Backport)",
            issue_code="not-supported",
        )
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise BadNotification(
            422,
            "Bundle.entry is empty: a notification Bundle starts with a SubscriptionStatus Parameters",
            issue_code="required",
        )
    first = entries[0].get("resource") if isinstance(entries[0], Mapping) else None
    if not isinstance(first, Mapping) or first.get("resourceType") != "Parameters":
        raise BadNotification(
            422,
            f"{STATUS_PATH} is not a Parameters: a Backport notification "
            "Bundle starts with its SubscriptionStatus",
            issue_code="invalid",
        )
    return entries


def _read_status(parameters: Mapping[str, Any]) -> _Status:
    found: dict[str, Any] = {}
    events: list[tuple[int, str | None]] = []
    for index, parameter in enumerate(parameters.get("parameter") or []):
        name = parameter.get("name")
        path = f"{STATUS_PATH}.parameter[{index}]"
        if name == "notification-event":
            events.append(_notification_event(parameter, path))
        elif name == "events-since-subscription-start":
            found[name] = _integer(parameter, path)
        elif isinstance(name, str):
            found.setdefault(name, _value(parameter))
    status = _Status(type=_type(found.get("type")), events=events)
    status.subscription_id = _subscription_ref(found.get("subscription"))
    status.status = _code_or_none(found.get("status"))
    status.topic = found.get("topic") if isinstance(found.get("topic"), str) else None
    status.events_since_start = found.get("events-since-subscription-start")
    status.error = _error_codes(found.get("error"))
    return status


def _type(value: Any) -> NotificationType:
    if value is None:
        raise BadNotification(
            422,
            f"{STATUS_PATH}.parameter 'type' is missing: a SubscriptionStatus "
            "must say whether it is a handshake, heartbeat or event-notification",
            issue_code="required",
        )
    try:
        kind = NotificationType(value)
    except ValueError:
        kind = None
    if kind is None or kind in (NotificationType.PING, NotificationType.RESOURCE):
        raise BadNotification(
            422,
            f"{STATUS_PATH}.parameter 'type' is not one of handshake, heartbeat, "
            "event-notification or query-status",
            issue_code="code-invalid",
        )
    return kind


def _notification_event(parameter: Mapping[str, Any], path: str) -> tuple[int, str | None]:
    number: int | None = None
    focus: str | None = None
    for index, part in enumerate(parameter.get("part") or []):
        if part.get("name") == "event-number":
            number = _integer(part, f"{path}.part[{index}]")
        elif part.get("name") == "focus":
            reference = part.get("valueReference")
            focus = reference.get("reference") if isinstance(reference, Mapping) else None
    if number is None:
        raise BadNotification(422, f"{path} has no event-number part", issue_code="required")
    return number, focus


def _integer(parameter: Mapping[str, Any], path: str) -> int:
    """An event count or number: a string of digits in R4 (no integer64), or an integer."""
    if isinstance(parameter.get("valueString"), str) and _DIGITS.match(parameter["valueString"]):
        return int(parameter["valueString"])
    for key in _INTEGER_VALUES:
        value = parameter.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
            return value
    keys = [key for key in parameter if key.startswith("value")]
    where = f"{path}.{keys[0]}" if keys else f"{path}.value[x]"
    raise BadNotification(422, f"{where} is not a non-negative integer event number", issue_code="value")


def _value(parameter: Mapping[str, Any]) -> Any:
    for key, value in parameter.items():
        if key.startswith("value"):
            return value
    return None


def _subscription_ref(value: Any) -> str | None:
    reference = value.get("reference") if isinstance(value, Mapping) else value
    target = split_reference(reference)
    return target[1] if target and target[0] == "Subscription" else None


def _code_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and _CODE.match(value) else None


def _error_codes(value: Any) -> str | None:
    """The codes of SubscriptionStatus errors (codes only: free text may quote data)."""
    concepts = value if isinstance(value, list) else [value] if isinstance(value, Mapping) else []
    codes = [str(c.get("code")) for concept in concepts for c in concept.get("coding") or [] if c.get("code")]
    return ", ".join(codes) or None


def _subscription(named: str | None, posted_for: str | None) -> str:
    if named and posted_for and named != posted_for:
        raise BadNotification(
            422,
            f"{STATUS_PATH}.parameter 'subscription' names another subscription "
            "than the one this notification was posted for",
            issue_code="business-rule",
        )
    subscription = named or posted_for
    if subscription is None:
        raise BadNotification(
            422,
            f"{STATUS_PATH}.parameter 'subscription' is missing and no subscription "
            "id was given in the X-Subscription-Id header or the URL",
            issue_code="required",
        )
    return subscription


def _events(
    status: _Status, subscription: str, entries: list[Any], received_at: datetime
) -> tuple[InboxEventCreate, ...]:
    resources = [
        e["resource"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
    ]
    if status.events:
        found = _by_reference(entries)
        return tuple(
            subscription_event(
                subscription, number, focus=split_reference(focus), resource=_focus(found, focus)
            )
            for number, focus in sorted(status.events, key=lambda event: event[0])
        )
    if resources:
        return tuple(inbox_event_for_resource(resource, source=subscription) for resource in resources)
    if status.events_since_start is not None:
        return (subscription_event(subscription, status.events_since_start, focus=None, resource=None),)
    return (ping_event(subscription, received_at=received_at),)


def _focus(found: dict[str, Mapping[str, Any]], focus: str | None) -> Mapping[str, Any] | None:
    """The full resource an event is about, when the Bundle carries it (full-resource payload)."""
    target = split_reference(focus)
    if focus is None or target is None:
        return None
    return found.get(focus) or found.get("/".join(target))


def _by_reference(entries: list[Any]) -> dict[str, Mapping[str, Any]]:
    """Full resources in the Bundle, keyed by fullUrl and by `Type/id`, for focus look-ups."""
    found: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            continue
        if isinstance(entry.get("fullUrl"), str):
            found[entry["fullUrl"]] = resource
        found[f"{resource.get('resourceType')}/{resource.get('id')}"] = resource
    return found
