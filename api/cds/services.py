"""The three CDS services: their hooks, prefetch templates and the request/feedback bodies."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Service(StrEnum):
    """A service id, which is also the hook it answers."""

    PATIENT_VIEW = "patient-view"
    ORDER_SIGN = "order-sign"
    ENCOUNTER_DISCHARGE = "encounter-discharge"


PATIENT = "Patient/{{context.patientId}}"

# What each hook reads from the EHR: the EHR sends it along (prefetch) or the service reads it
# with the hook's fhirAuthorization. order-sign's draft orders come in its context.
PREFETCH: dict[Service, dict[str, str]] = {
    Service.PATIENT_VIEW: {"patient": PATIENT},
    Service.ORDER_SIGN: {},
    Service.ENCOUNTER_DISCHARGE: {"patient": PATIENT, "encounter": "Encounter/{{context.encounterId}}"},
}

_DESCRIPTIONS = {
    Service.PATIENT_VIEW: ("ERAS pathway status",
                           "The patient's ERAS pathway: overdue items, what is due next, compliance so far."),
    Service.ORDER_SIGN: ("ERAS pathway enrolment",
                         "Signing a spinal fusion or decompression order: enrol the patient on the "
                         "ERAS pathway, with the variant the order implies."),
    Service.ENCOUNTER_DISCHARGE: ("ERAS items before discharge",
                                  "ERAS items still open or missed before the patient goes home."),
}


def discovery() -> dict[str, Any]:
    """The discovery document (`GET /cds-services`)."""
    return {"services": [
        {"hook": service.value, "id": service.value, "title": title, "description": description,
         "prefetch": PREFETCH[service]}
        for service, (title, description) in _DESCRIPTIONS.items()]}


class FhirAuthorization(BaseModel):
    """The token the EHR lends the service for its FHIR reads."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None


class HookRequest(BaseModel):
    """A CDS Hooks call as the EHR posts it."""

    model_config = ConfigDict(populate_by_name=True)

    hook: str
    hook_instance: str = Field(alias="hookInstance")
    fhir_server: str | None = Field(None, alias="fhirServer")
    fhir_authorization: FhirAuthorization | None = Field(None, alias="fhirAuthorization")
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @property
    def patient_id(self) -> str | None:
        value = self.context.get("patientId")
        return value if isinstance(value, str) and value else None


class AcceptedSuggestion(BaseModel):
    id: str


class FeedbackEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    card: str
    outcome: str
    accepted_suggestions: list[AcceptedSuggestion] = Field(default_factory=list, alias="acceptedSuggestions")
    outcome_timestamp: str | None = Field(None, alias="outcomeTimestamp")


class Feedback(BaseModel):
    """The body of `POST /cds-services/{id}/feedback`."""

    feedback: list[FeedbackEntry]
