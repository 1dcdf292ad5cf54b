"""Required code bindings of every FHIR element the engine writes, checked because fhir.resources does not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_REQUEST_STATUS = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
_PRIORITY = ("routine", "urgent", "asap", "stat")

# R4 required bindings, by resource type and element (ValueSet in the comment).
BINDINGS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "Task": {
        # task-status
        "status": ("draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
                   "in-progress", "on-hold", "failed", "completed", "entered-in-error"),
        # task-intent
        "intent": ("unknown", "proposal", "plan", "order", "original-order", "reflex-order",
                   "filler-order", "instance-order", "option"),
        "priority": _PRIORITY,  # request-priority
    },
    "CommunicationRequest": {
        "status": _REQUEST_STATUS,  # request-status
        "priority": _PRIORITY,
    },
    "CarePlan": {
        "status": _REQUEST_STATUS,  # request-status
        "intent": ("proposal", "plan", "order", "option"),  # care-plan-intent
    },
    "Bundle": {
        # bundle-type
        "type": ("document", "message", "transaction", "transaction-response", "batch",
                 "batch-response", "history", "searchset", "collection"),
    },
}
# http-verb (R4 includes HEAD and PATCH).
HTTP_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")


class InvalidFhirCode(ValueError):
    """A code outside its element's required value set; carries where it was and what is allowed."""

    def __init__(self, resource_type: str, path: str, value: object, allowed: tuple[str, ...]) -> None:
        self.resource_type = resource_type
        self.path = path
        self.value = value
        self.allowed = allowed
        super().__init__(
            f"{resource_type} has the code {value!r} at {path}, which is not one of the allowed "
            f"codes: {', '.join(allowed)}"
        )


def check_resource(resource: Mapping[str, Any], *, _where: str = "") -> None:
    """Raise InvalidFhirCode for the first bound element holding a code outside its value set.

    Bundles are walked into: each entry's request method and its resource are checked too.
    """
    resource_type = str(resource.get("resourceType", ""))
    prefix = _where or resource_type
    for element, allowed in BINDINGS.get(resource_type, {}).items():
        if element in resource:
            _check(resource_type, f"{prefix}.{element}", resource[element], allowed)
    if resource_type == "Bundle":
        for i, entry in enumerate(resource.get("entry") or []):
            request = entry.get("request")
            if isinstance(request, Mapping) and "method" in request:
                _check("Bundle", f"{prefix}.entry[{i}].request.method", request["method"], HTTP_VERBS)
            inner = entry.get("resource")
            if isinstance(inner, Mapping):
                check_resource(inner, _where=f"{prefix}.entry[{i}].resource")


def _check(resource_type: str, path: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidFhirCode(resource_type, path, value, allowed)
