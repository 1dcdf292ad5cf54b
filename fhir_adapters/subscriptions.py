"""The FHIR Subscriptions a hospital creates so its EHR notifies the engine (R4 and Backport)."""

from __future__ import annotations

from typing import Any

BACKPORT_PROFILE = ("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                    "backport-subscription")
BACKPORT_EXT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
TOPIC_BASE = "http://eras-engine.org/fhir/SubscriptionTopic"


def _channel(endpoint: str, secret_header: str, payload: str) -> dict[str, Any]:
    return {"type": "rest-hook", "endpoint": endpoint, "payload": payload,
            "header": [secret_header]}


def r4_subscriptions(resource_types: list[str], *, endpoint: str, secret_header: str,
                     reason: str) -> list[dict[str, Any]]:
    """One R4 criteria Subscription per resource type the pathways read (full-resource payload)."""
    return [{"resourceType": "Subscription", "status": "requested", "reason": reason,
             "criteria": f"{rtype}?", "channel": _channel(endpoint, secret_header, "application/fhir+json")}
            for rtype in resource_types]


def backport_subscription(resource_types: list[str], *, endpoint: str, secret_header: str,
                          reason: str, heartbeat_seconds: int = 300) -> dict[str, Any]:
    """One R4 Backport (topic-based) Subscription with a filter per resource type."""
    filters = [{"url": f"{BACKPORT_EXT}/backport-filter-criteria", "valueString": f"{rtype}?"}
               for rtype in resource_types]
    channel = _channel(endpoint, secret_header, "application/fhir+json")
    channel["_payload"] = {"extension": [{"url": f"{BACKPORT_EXT}/backport-payload-content",
                                          "valueCode": "full-resource"}]}
    channel["extension"] = [{"url": f"{BACKPORT_EXT}/backport-heartbeat-period",
                             "valueUnsignedInt": heartbeat_seconds}]
    return {"resourceType": "Subscription", "meta": {"profile": [BACKPORT_PROFILE]},
            "status": "requested", "reason": reason, "criteria": f"{TOPIC_BASE}/eras-patient-data",
            "_criteria": {"extension": filters}, "channel": channel}
