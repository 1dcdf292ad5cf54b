"""Engine → EHR: planned actions as FHIR R4 Task, CommunicationRequest and CarePlan, and their transaction."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from engine.results import OPEN_STATUSES, PlannedAction, Status
from fhir_adapters.facts import escape_search_token
from fhir_adapters.plandefinition import CANONICAL_BASE, CODE_SYSTEM, ROLE_SYSTEM, fhir_id
from fhir_adapters.valuesets import check_resource

# Task.status per action status. Declined is `cancelled` with the decline reason as statusReason,
# which is what the engine reads back as a decline; a missed window is `failed` ("window-closed").
TASK_STATUS: Mapping[Status, str] = {
    Status.UPCOMING: "requested",
    Status.DUE: "ready",
    Status.OVERDUE: "ready",
    Status.DONE: "completed",
    Status.DONE_LATE: "completed",
    Status.DECLINED: "cancelled",
    Status.MISSED: "failed",
    Status.NOT_APPLICABLE: "cancelled",
}
WINDOW_CLOSED = "window-closed"
REASON_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/eras-status-reason"
# Tasks in these states are finished; cancelling them would rewrite history.
FINAL_TASK_STATUSES = frozenset({"completed", "failed", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class CodeSystems:
    """Our code systems: element codes, roles, Task business statuses and status reasons."""

    element: str = CODE_SYSTEM
    role: str = ROLE_SYSTEM
    business_status: str = f"{CANONICAL_BASE}/CodeSystem/eras-task-status"
    reason: str = REASON_SYSTEM


@dataclass(frozen=True, slots=True)
class Write:
    """One resource to write: new (no id: conditional create) or known (id and version: update)."""

    resource: dict[str, Any]
    id: str | None = None
    version: str | None = None


class InvalidWrite(ValueError):
    """A resource the engine built is not valid FHIR R4; a bug on our side, named by type and element."""


def task_for(action: PlannedAction, *, patient_id: str, encounter_id: str | None, careplan_ref: str | None,
             pathway_canonical: str, identifier_system: str, now: datetime,
             authored_on: datetime | None = None, codes: CodeSystems = CodeSystems()) -> dict[str, Any]:
    """The Task for one planned action; `authored_on` keeps the first write's time on updates."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": identifier_system, "value": action.key}],
        "instantiatesCanonical": activity_canonical(pathway_canonical, action.element_id),
        "status": TASK_STATUS[action.status],
        "businessStatus": _concept(codes.business_status, action.status.value),
        "intent": "order",
        "priority": action.priority,
        "code": {"coding": [{"system": codes.element, "code": action.element_id, "display": action.title}],
                 "text": action.title},
        "description": action.instructions,
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": _iso(authored_on or now),
        "lastModified": _iso(now),
        "performerType": [_role(action.role, codes)],
    }
    reason = _status_reason(action, codes)
    if reason is not None:
        task["statusReason"] = reason
    if careplan_ref:
        task["basedOn"] = [{"reference": careplan_ref}]
    if encounter_id:
        task["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if action.opens:
        # Only the start: executionPeriod.end is when the work was done (read back as the
        # completion time), so the planned close must not be written there.
        task["executionPeriod"] = _period(action.opens, None)
    if action.opens or action.due:
        task["restriction"] = {"period": _period(action.opens, action.due)}
    return checked(task)


def _status_reason(action: PlannedAction, codes: CodeSystems) -> dict[str, Any] | None:
    if action.status is Status.DECLINED and action.decline_reason:
        return _concept(codes.reason, action.decline_reason)
    if action.status is Status.MISSED:
        return {**_concept(codes.reason, WINDOW_CLOSED), "text": "window closed"}
    if action.status is Status.NOT_APPLICABLE:
        return _concept(codes.reason, Status.NOT_APPLICABLE.value)
    return None


def activity_canonical(pathway_canonical: str, element_id: str) -> str:
    """The element's ActivityDefinition canonical, named as plandefinition.py exports it."""
    url, _, version = pathway_canonical.partition("|")
    base, sep, pathway_id = url.rpartition("/PlanDefinition/")
    if not sep or not pathway_id:
        raise ValueError("pathway canonical must look like <base>/PlanDefinition/<id>|<version>")
    activity = f"{base}/ActivityDefinition/{pathway_id}-{fhir_id(element_id)}"
    return f"{activity}|{version}" if version else activity


def careplan_for(*, patient_id: str, encounter_id: str | None, enrolment_id: str, enrolled_at: datetime,
                 pathway_canonical: str, identifier_system: str, task_refs: Iterable[str], title: str,
                 now: datetime, ended_at: datetime | None = None,
                 withdrawn: str | None = None) -> dict[str, Any]:
    """The patient's plan: one CarePlan per enrolment, listing the Tasks written for it.

    An ended plan is `completed`, or `revoked` when the patient was withdrawn (surgery
    cancelled, unenrolled); R4 CarePlan has no statusReason, so the reason is a note.
    """
    status = "active" if ended_at is None else "revoked" if withdrawn is not None else "completed"
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "identifier": [{"system": identifier_system, "value": enrolment_id}],
        "instantiatesCanonical": [pathway_canonical],
        "status": status,
        "intent": "plan",
        "title": title,
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": _period(enrolled_at, ended_at),
        "created": _iso(enrolled_at),
        "activity": [{"reference": {"reference": ref}} for ref in task_refs],
    }
    if encounter_id:
        plan["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if withdrawn is not None and ended_at is not None:
        plan["note"] = [{"time": _iso(ended_at), "text": f"Withdrawn from the pathway: {withdrawn}"}]
    if not plan["activity"]:
        del plan["activity"]
    return checked(plan)


def communication_request_for(action: PlannedAction, *, patient_id: str, encounter_id: str | None,
                              identifier_system: str, now: datetime, task_ref: str | None = None,
                              careplan_ref: str | None = None, recipient: str | None = None,
                              codes: CodeSystems = CodeSystems()) -> dict[str, Any]:
    """A reminder (to `recipient`, the role in `category`, `about` the Task) or a patient message.

    Open actions are `active`; any other status `revoked` (no longer needed): we cannot tell
    whether a reminder was actually delivered, which `completed` would claim.
    """
    to_patient = action.kind == "patient-message"
    # A reminder about a Task has its own identifier, beside the Task's.
    key = action.key if action.kind != "task" else f"{action.key}:reminder"
    when = action.remind_at or action.opens or action.due
    request: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "identifier": [{"system": identifier_system, "value": key}],
        "status": "active" if action.status in OPEN_STATUSES else "revoked",
        "category": [_role(action.role, codes)],
        "priority": action.priority,
        "subject": {"reference": f"Patient/{patient_id}"},
        "payload": [{"contentString": action.instructions if to_patient
                     else f"{action.title}: {action.instructions}"}],
        "authoredOn": _iso(now),
    }
    if to_patient:
        request["recipient"] = [{"reference": f"Patient/{patient_id}"}]
    elif recipient:
        request["recipient"] = [{"reference": recipient}]
    if task_ref:
        request["about"] = [{"reference": task_ref}]
    if careplan_ref:
        request["basedOn"] = [{"reference": careplan_ref}]
    if encounter_id:
        request["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    if when is not None:
        request["occurrenceDateTime"] = _iso(when)
    return checked(request)


def cancel_task(task: Mapping[str, Any], reason_code: str, reason_text: str, *, now: datetime,
                reason_system: str = REASON_SYSTEM) -> dict[str, Any]:
    """The Task cancelled with a reason (Tasks are never deleted); finished Tasks cannot be."""
    if task.get("status") in FINAL_TASK_STATUSES:
        raise ValueError(f"Task/{task.get('id', '?')} is {task.get('status')} and cannot be cancelled")
    out = copy.deepcopy(dict(task))
    out["status"] = "cancelled"
    out["statusReason"] = {**_concept(reason_system, reason_code), "text": reason_text}
    out["lastModified"] = _iso(now)
    return validated(out)


# CommunicationRequests in these states are over; a withdrawal leaves them as they are.
FINAL_REQUEST_STATUSES = frozenset({"completed", "revoked", "entered-in-error"})


def withdraw(resource: Mapping[str, Any], reason_code: str, reason_text: str, *, now: datetime,
             reason_system: str = REASON_SYSTEM) -> dict[str, Any]:
    """An open Task cancelled, or an open CommunicationRequest (a reminder, a patient message)
    revoked, with the reason as statusReason; finished ones cannot be."""
    if resource.get("resourceType") != "CommunicationRequest":
        return cancel_task(resource, reason_code, reason_text, now=now, reason_system=reason_system)
    if resource.get("status") in FINAL_REQUEST_STATUSES:
        raise ValueError(f"CommunicationRequest/{resource.get('id', '?')} is {resource.get('status')} "
                         "and cannot be revoked")
    out = copy.deepcopy(dict(resource))
    out["status"] = "revoked"
    out["statusReason"] = {**_concept(reason_system, reason_code), "text": reason_text}
    return validated(out)


def local_reference(identifier_system: str, value: str) -> str:
    """The urn:uuid a new resource has inside a transaction, derived from its business identifier.

    Build references to a resource written in the same transaction with this (e.g. Task.basedOn
    a new CarePlan); `transaction_for` gives the new resource the same fullUrl.
    """
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{identifier_system}|{value}')}"


def transaction_for(patient_id: str, writes: Iterable[Write]) -> dict[str, Any]:
    """One transaction Bundle: conditional creates for new resources, If-Match updates for known ones."""
    entries = []
    for write in writes:
        resource = write.resource
        rtype = resource["resourceType"]
        subject = resource.get("for") or resource.get("subject") or {}
        if subject.get("reference") != f"Patient/{patient_id}":
            raise ValueError(f"a {rtype} in the transaction is not about Patient/{patient_id}")
        entries.append(_new_entry(resource) if write.id is None else _update_entry(write))
    # Its resources were built by the functions above (or `validated`): not validated again.
    return checked({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _new_entry(resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource["resourceType"]
    ident = (resource.get("identifier") or [{}])[0]
    if not ident.get("system") or not ident.get("value"):
        raise ValueError(f"a new {rtype} needs a business identifier for its conditional create")
    token = f"{escape_search_token(ident['system'])}|{escape_search_token(ident['value'])}"
    return {
        "fullUrl": local_reference(ident["system"], ident["value"]),
        "resource": resource,
        "request": {"method": "POST", "url": rtype,
                    "ifNoneExist": f"identifier={quote(token, safe='/:|')}"},
    }


def _update_entry(write: Write) -> dict[str, Any]:
    if not write.version:
        raise ValueError("a known resource needs its version: updates are conditional on it (If-Match)")
    rtype = write.resource["resourceType"]
    return {
        "resource": {**write.resource, "id": write.id},
        "request": {"method": "PUT", "url": f"{rtype}/{write.id}", "ifMatch": f'W/"{write.version}"'},
    }


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource itself, once its structure (R4B model) and required codes (valuesets) check out."""
    rtype = resource["resourceType"]
    try:
        get_fhir_model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                          for err in exc.errors(include_input=False, include_url=False)[:5])
        raise InvalidWrite(f"{rtype} built for writing is not valid FHIR R4: {where}") from None
    check_resource(resource)
    return resource


def checked(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource of a fixed shape built here: its codes checked (valuesets), its structure not
    validated through the R4B model at each write (the apply's hot path). Tests validate every
    shape these builders produce with fhir.resources (tests/fhir_adapters/test_writeback_shapes.py)."""
    check_resource(resource)
    return resource


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("times written to FHIR need a time zone")
    return value.astimezone(UTC).isoformat()


def _period(start: datetime | None, end: datetime | None) -> dict[str, str]:
    out = {}
    if start is not None:
        out["start"] = _iso(start)
    if end is not None:
        out["end"] = _iso(end)
    return out


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _role(role: str, codes: CodeSystems) -> dict[str, Any]:
    return {"coding": [{"system": codes.role, "code": role}], "text": role.replace("_", " ")}
