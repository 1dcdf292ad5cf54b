"""Factories for intake tests: FHIR payloads, Backport notification Bundles, inbox events."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete
from sqlmodel import Session

from store.models import InboxEvent, InboxEventCreate, PollWatermark, SubscriptionGap, SubscriptionState


def observation(*, resource_id: str | None = None, version: str = "1", patient: str = "p1") -> dict[str, Any]:
    """A small valid R4 Observation (a pain score) with an id and versionId."""
    return {
        "resourceType": "Observation",
        "id": resource_id or uuid.uuid4().hex[:16],
        "meta": {"versionId": version, "lastUpdated": "2025-03-10T08:00:00Z"},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2025-03-10T08:00:00Z",
        "valueInteger": 3,
    }


def backport_bundle(
    subscription_id: str,
    kind: str = "event-notification",
    *,
    events: Sequence[tuple[int | str, dict[str, Any] | None]] = (),
    events_since_start: int | str | None = None,
) -> dict[str, Any]:
    """A Backport notification Bundle; each event is (number, focus resource or None)."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"https://ehr.example/fhir/Subscription/{subscription_id}"},
        },
        {"name": "topic", "valueCanonical": "http://example.org/SubscriptionTopic/encounter-start"},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": kind},
    ]
    if events_since_start is not None:
        parameters.append({"name": "events-since-subscription-start", "valueString": str(events_since_start)})
    entries: list[dict[str, Any]] = []
    for number, resource in events:
        part: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(number)}]
        if resource is not None:
            reference = f"https://ehr.example/fhir/{resource['resourceType']}/{resource['id']}"
            part.append({"name": "focus", "valueReference": {"reference": reference}})
            entries.append(_history_entry(reference, resource))
        parameters.append({"name": "notification-event", "part": part})
    status_entry = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {"resourceType": "Parameters", "parameter": parameters},
        "request": {"method": "GET", "url": f"Subscription/{subscription_id}/$status"},
        "response": {"status": "200"},
    }
    return {"resourceType": "Bundle", "type": "history", "entry": [status_entry, *entries]}


def _history_entry(reference: str, resource: dict[str, Any]) -> dict[str, Any]:
    path = f"{resource['resourceType']}/{resource['id']}"
    return {
        "fullUrl": reference,
        "resource": resource,
        "request": {"method": "PUT", "url": path},
        "response": {"status": "200"},
    }


def new_event(
    *, key: str | None = None, source: str = "sub-test", patient_ref: str | None = None,
    resource_type: str = "Observation",
) -> InboxEventCreate:
    """An inbox event with a unique dedup key unless one is given."""
    resource_id = uuid.uuid4().hex[:12]
    return InboxEventCreate(
        source=source,
        kind="event",
        dedup_key=key or f"res:{resource_type}/{resource_id}/_history/1",
        resource_type=resource_type,
        resource_id=resource_id,
        patient_ref=patient_ref,
        payload={"resourceType": resource_type, "id": resource_id},
    )


def clear_intake_tables(engine: Engine) -> None:
    """Remove committed intake rows, so tests that commit do not see each other's events."""
    with Session(engine) as session:
        for table in (InboxEvent, SubscriptionGap, SubscriptionState, PollWatermark):
            session.execute(delete(table))
        session.commit()
