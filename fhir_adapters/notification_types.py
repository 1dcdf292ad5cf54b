"""What a parsed notification is, the error for one we refuse, and R4 validation of its resources."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from store.models import InboxEventCreate

_TYPE_NAME = re.compile(r"^[A-Za-z]{1,64}$")
# Pydantic error types -> OperationOutcome issue codes (http://hl7.org/fhir/issue-type).
_ISSUE_CODES = {"missing": "required", "extra_forbidden": "structure"}


class BadNotification(Exception):
    """A notification we refuse: the HTTP status, one sentence, and the OperationOutcome code.

    The sentence names the problem and the element path (`Bundle.entry[0].resource.type`),
    never a value from the body, so it cannot leak patient data into logs or responses.
    """

    def __init__(self, status_code: int, message: str, *, issue_code: str = "invalid") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.issue_code = issue_code


class NotificationType(StrEnum):
    """R4 rest-hook kinds (ping, resource) and Backport SubscriptionStatus types."""

    PING = "ping"
    RESOURCE = "resource"
    HANDSHAKE = "handshake"
    HEARTBEAT = "heartbeat"
    EVENT_NOTIFICATION = "event-notification"
    QUERY_STATUS = "query-status"


@dataclass(frozen=True)
class Notification:
    """One POSTed notification: its subscription, its status report and the events it carries."""

    type: NotificationType
    subscription_id: str
    events: tuple[InboxEventCreate, ...] = ()
    status: str | None = None
    topic: str | None = None
    events_since_start: int | None = None
    error: str | None = None


def resource_model(resource_type: Any, path: str) -> type[Resource]:
    """The R4B model class of a resource type, or 422 for a name that is not one."""
    where = f"{path}.resourceType" if path else "resourceType"
    if not isinstance(resource_type, str) or not resource_type:
        raise BadNotification(
            422, f"{where} is missing: the body is not a FHIR resource", issue_code="required"
        )
    shown = resource_type if _TYPE_NAME.match(resource_type) else "(unreadable)"
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        model = None
    if model is None or not issubclass(model, Resource):
        raise BadNotification(
            422, f"{where} {shown!r} is not an R4 resource type", issue_code="not-supported"
        )
    return model


def validate_resource(resource: Mapping[str, Any], path: str) -> None:
    """Check a resource against its fhir.resources R4B model; 422 naming the first bad element."""
    model = resource_model(resource.get("resourceType"), path)
    try:
        model.model_validate(resource)
    except ValidationError as error:
        raise _invalid(error, resource, path) from None
    except RecursionError:
        raise BadNotification(
            422, f"{path} is nested too deeply to validate", issue_code="too-costly"
        ) from None


def _invalid(error: ValidationError, resource: Mapping[str, Any], path: str) -> BadNotification:
    details = error.errors(include_url=False, include_context=False)
    first = details[0]
    where = element_path(path, first["loc"])
    reason = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
    value = first.get("input")
    if isinstance(value, str) and value and value in reason:
        reason = "invalid value"
    more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
    code = _ISSUE_CODES.get(str(first["type"]), "value")
    kind = str(resource.get("resourceType"))
    return BadNotification(422, f"{where}: {reason}; the {kind} is not valid FHIR R4{more}", issue_code=code)


def element_path(base: str, loc: tuple[int | str, ...]) -> str:
    """`Observation.code.coding[0]` from a base path and a pydantic location."""
    path = base
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
