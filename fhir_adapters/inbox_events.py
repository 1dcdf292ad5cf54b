"""FHIR resources as inbox events: references, patient of a resource, deduplication keys."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from store.inbox import InboxKind
from store.models import InboxEventCreate
from store.types import as_utc

_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Elements that point at the patient a resource is about, in the order FHIR R4 uses them.
_PATIENT_ELEMENTS = ("subject", "patient", "for", "beneficiary")


def split_reference(reference: Any) -> tuple[str, str] | None:
    """(type, id) of a relative or absolute literal reference; None for urn: or odd ones."""
    if not isinstance(reference, str) or reference.startswith("urn:"):
        return None
    parts = reference.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not _TYPE.match(parts[-2]) or not _ID.match(parts[-1]):
        return None
    return parts[-2], parts[-1]


def patient_ref_of(resource: Mapping[str, Any]) -> str | None:
    """`Patient/<id>` for the patient a resource is about (or the Patient itself), else None."""
    if resource.get("resourceType") == "Patient":
        resource_id = resource.get("id")
        return f"Patient/{resource_id}" if isinstance(resource_id, str) and _ID.match(resource_id) else None
    for element in _PATIENT_ELEMENTS:
        value = resource.get(element)
        target = split_reference(value.get("reference")) if isinstance(value, Mapping) else None
        if target is not None and target[0] == "Patient":
            return f"Patient/{target[1]}"
    return None


def resource_dedup_key(resource: Mapping[str, Any]) -> str:
    """`res:<type>/<id>/_history/<versionId>`: one key per version of a resource.

    Without a versionId the lastUpdated instant stands in for it, and without either a hash
    of the content: the same content delivered twice is still stored once.
    """
    meta = resource.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    base = f"res:{resource.get('resourceType')}/{resource.get('id')}"
    if isinstance(meta.get("versionId"), str):
        return f"{base}/_history/{meta['versionId']}"
    if isinstance(meta.get("lastUpdated"), str):
        return f"{base}/_lastUpdated/{meta['lastUpdated']}"
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{base}/_sha256/{hashlib.sha256(canonical.encode()).hexdigest()}"


def inbox_event_for_resource(
    resource: Mapping[str, Any], *, source: str, kind: InboxKind = InboxKind.EVENT
) -> InboxEventCreate:
    """The inbox event for a resource received in full (rest-hook payload or a poll)."""
    return InboxEventCreate(
        source=source,
        kind=kind,
        dedup_key=resource_dedup_key(resource),
        resource_type=str(resource.get("resourceType")),
        resource_id=str(resource.get("id")),
        patient_ref=patient_ref_of(resource),
        payload=resource_stub(resource),
    )


def ping_event(subscription_id: str, *, received_at: datetime) -> InboxEventCreate:
    """The inbox event for an R4 rest-hook ping: something changed, the EHR did not say what."""
    return InboxEventCreate(
        source=subscription_id,
        kind=InboxKind.EVENT,
        dedup_key=f"ping:{subscription_id}:{as_utc(received_at).isoformat()}",
    )


def subscription_event(
    subscription_id: str,
    number: int,
    *,
    focus: tuple[str, str] | None,
    resource: Mapping[str, Any] | None,
) -> InboxEventCreate:
    """The inbox event for Backport event `number`: id-only (focus) or with the full resource."""
    return InboxEventCreate(
        source=subscription_id,
        kind=InboxKind.EVENT,
        dedup_key=f"sub:{subscription_id}:{number}",
        resource_type=focus[0] if focus else None,
        resource_id=focus[1] if focus else None,
        patient_ref=patient_ref_of(resource) if resource is not None else None,
        event_number=number,
        payload=resource_stub(resource) if resource is not None else None,
    )


def resource_stub(resource: Mapping[str, Any]) -> dict[str, Any]:
    """What the inbox keeps of a resource: its type, id and version, never its content.

    Processing reads the patient's record from the EHR, so a name, MRN, birth date or value
    received in a notification is not kept (data minimisation).
    """
    stub: dict[str, Any] = {"resourceType": resource.get("resourceType"), "id": resource.get("id")}
    meta = resource.get("meta")
    if isinstance(meta, Mapping):
        kept = {k: meta[k] for k in ("versionId", "lastUpdated") if isinstance(meta.get(k), str)}
        if kept:
            stub["meta"] = kept
    return stub


def poll_source(resource_type: str) -> str:
    """The `source` of events found by polling `resource_type`."""
    return f"poll:{resource_type}"
