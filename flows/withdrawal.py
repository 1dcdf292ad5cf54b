"""Surgery cancelled in the record: the enrolment it started ends, with that as the reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.model import Pathway
from engine.plan import plan_of
from fhir_adapters.facts import facts_from_resources
from flows.runtime import Runtime
from store.db import session_scope
from store.enrolments import exit_enrolment
from store.models import Enrolment

AUTO = "auto:"
# A booking in one of these states no longer books anything (FHIR R4 request/appointment status).
CANCELLED: Mapping[str, frozenset[str]] = {
    "ServiceRequest": frozenset({"revoked", "entered-in-error"}),
    "Appointment": frozenset({"cancelled", "noshow", "entered-in-error"}),
}


def cancellation_reason(pathway: Pathway, enrolment: Enrolment, resources: Sequence[Mapping[str, Any]],
                        *, patient_id: str) -> str | None:
    """Why the enrolment should end, when the booking that enrolled the patient was cancelled
    and nothing else in the record (a new booking, the operation) still enrols them; else None.

    Only automatic enrolments end this way: a patient enrolled by hand stays until unenrolled.
    """
    if not enrolment.enrolled_by.startswith(AUTO):
        return None
    source = enrolment.enrolled_by.removeprefix(AUTO)
    rtype, _, rid = source.partition("/")
    booking = next((r for r in resources if r.get("resourceType") == rtype and r.get("id") == rid), None)
    if booking is None or booking.get("status") not in CANCELLED.get(rtype, frozenset()):
        return None
    reading = facts_from_resources(resources, plan_of(pathway).terminology, patient_id=patient_id,
                                   enrolment_id=enrolment.id, enrolled_at=None, parameters={},
                                   task_identifier_system="-")
    if any(f.concept in pathway.enrols_on for f in reading.facts.facts):
        return None  # rebooked, or operated: still on the pathway
    return f"surgery cancelled ({source} {booking.get('status')})"


def withdraw_if_cancelled(rt: Runtime, enrolment: Enrolment, resources: Sequence[Mapping[str, Any]],
                          now: datetime) -> Enrolment:
    """The enrolment, exited (with the reason) when its surgery was cancelled in the record."""
    reason = cancellation_reason(rt.pathway(enrolment.pathway_id), enrolment, resources,
                                 patient_id=enrolment.patient_ref.split("/", 1)[1])
    if reason is None:
        return enrolment
    with session_scope(rt.db) as session:
        return exit_enrolment(session=session, enrolment_id=enrolment.id, reason=reason, at=now)
