"""Worklist → EHR: the evidence resource an element names, and Task status changes a nurse makes."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engine.terminology import Concept
from fhir_adapters.writeback import CodeSystems, cancel_task, validated, withdraw

EVIDENCE_TYPES = ("Procedure", "Observation")
_CODES = CodeSystems()


def evidence_for(
    concept: Concept,
    *,
    patient_id: str,
    encounter_id: str | None,
    identifier: tuple[str, str],
    at: datetime,
    value: float | str | None = None,
    unit: str | None = None,
) -> dict[str, Any] | None:
    """A Procedure or Observation coded with the concept's first coding; None if it names neither."""
    kinds = [kind for kind in concept.resources if kind in EVIDENCE_TYPES]
    if not kinds or not concept.codings:
        return None
    coding = concept.codings[0]
    code = {
        "coding": [
            {
                "system": coding.system,
                "code": coding.code,
                **({"display": coding.display} if coding.display else {}),
            }
        ],
        "text": concept.title,
    }
    resource: dict[str, Any] = {
        "resourceType": kinds[0],
        "identifier": [{"system": identifier[0], "value": identifier[1]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": code,
    }
    if encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    when = at.astimezone(UTC).isoformat()
    if kinds[0] == "Procedure":
        resource |= {"status": "completed", "performedDateTime": when}
    else:
        resource |= {"status": "final", "effectiveDateTime": when}
        if isinstance(value, int | float):
            resource["valueQuantity"] = {"value": value, **({"unit": unit} if unit else {})}
        elif value is not None:
            resource["valueString"] = str(value)
    return validated(resource)


def completed_task(
    task: Mapping[str, Any], *, now: datetime, codes: CodeSystems = _CODES
) -> dict[str, Any]:
    """The Task marked completed by the worklist."""
    out = copy.deepcopy(dict(task))
    out["status"] = "completed"
    out["businessStatus"] = {"coding": [{"system": codes.business_status, "code": "done"}]}
    out.pop("statusReason", None)
    out["lastModified"] = now.astimezone(UTC).isoformat()
    # The completion time the engine judges timeliness by (fhir_adapters.facts.task_state).
    out["executionPeriod"] = {**out.get("executionPeriod", {}), "end": out["lastModified"]}
    return validated(out)


def declined_task(
    task: Mapping[str, Any], reason: str, text: str, *, now: datetime, codes: CodeSystems = _CODES
) -> dict[str, Any]:
    """The Task cancelled with the coded decline reason as statusReason."""
    out = cancel_task(task, reason, text, now=now, reason_system=codes.reason)
    out["businessStatus"] = {"coding": [{"system": codes.business_status, "code": "declined"}]}
    return validated(out)


def completed_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """A patient-facing CommunicationRequest (a questionnaire such as ODI) marked completed."""
    out = copy.deepcopy(dict(request))
    out["status"] = "completed"
    return validated(out)


def declined_request(
    request: Mapping[str, Any], reason: str, text: str, *, now: datetime, codes: CodeSystems = _CODES
) -> dict[str, Any]:
    """A CommunicationRequest revoked with the coded decline reason as statusReason."""
    return withdraw(request, reason, text, now=now, reason_system=codes.reason)


def reassigned_task(
    task: Mapping[str, Any], role: str, *, now: datetime, codes: CodeSystems = _CODES
) -> dict[str, Any]:
    """The Task with another performer role."""
    out = copy.deepcopy(dict(task))
    out["performerType"] = [
        {"coding": [{"system": codes.role, "code": role}], "text": role.replace("_", " ")}
    ]
    out["lastModified"] = now.astimezone(UTC).isoformat()
    return validated(out)
