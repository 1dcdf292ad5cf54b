"""From a patient's evaluations and stored plan to FHIR writes, and back to stored FHIR ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.results import PlannedAction, Status
from fhir_adapters.plandefinition import pathway_canonical as pathway_canonical_url
from fhir_adapters.writeback import (
    FINAL_REQUEST_STATUSES,
    FINAL_TASK_STATUSES,
    Write,
    careplan_for,
    communication_request_for,
    local_reference,
    task_for,
    withdraw,
)
from store.models import Enrolment
from store.models import PlannedActionRow as StoredAction

NO_LONGER_APPLIES = "no-longer-applies"
WITHDRAWN = "withdrawn"  # the enrolment ended: surgery cancelled, patient unenrolled
# Someone else finished these Tasks (a nurse in the EHR); the engine never overwrites them.
HUMAN_FINAL = FINAL_TASK_STATUSES | {"cancelled"}


@dataclass
class EnrolmentWrites:
    """What one enrolment needs written: resources, and which action key each one is for."""

    writes: list[Write] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)  # None for the CarePlan
    # Actions that need no write (finished by a person, or never written): recorded as synced.
    untouched: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)

    def add(self, write: Write, key: str | None) -> None:
        self.writes.append(write)
        self.keys.append(key)


def _version(resource: Mapping[str, Any] | None) -> str | None:
    meta = (resource or {}).get("meta") or {}
    return meta.get("versionId")


def _task_ref(stored: StoredAction, system: str) -> str:
    if stored.fhir_id:
        return f"{stored.fhir_type or 'Task'}/{stored.fhir_id}"
    return local_reference(system, stored.key)


@dataclass(frozen=True)
class WriteContext:
    patient_id: str
    enrolment: Enrolment
    planned: Mapping[str, PlannedAction]  # what the evaluation wants, by action key
    pathway_version: int
    existing: Mapping[str, dict[str, Any]]  # action key -> the resource as read from FHIR
    system: str
    now: datetime
    # Element id -> action instructions, to rebuild a message that is not read back.
    instructions: Mapping[str, str] = field(default_factory=dict)


def plan_writes(ctx: WriteContext, pending: Sequence[StoredAction],
                all_actions: Sequence[StoredAction], title: str) -> EnrolmentWrites:
    """Writes for the pending actions plus the CarePlan when its activity list grows."""
    out = EnrolmentWrites()
    planned = ctx.planned
    careplan_ref = (f"CarePlan/{ctx.enrolment.careplan_id}" if ctx.enrolment.careplan_id
                    else local_reference(ctx.system, ctx.enrolment.id))
    grows = ctx.enrolment.careplan_id is None
    for stored in pending:
        current = ctx.existing.get(stored.key)
        if current is not None and current.get("status") in HUMAN_FINAL \
                and not _ours_final(current, stored):
            # A person finished it in the EHR: record it as written, never overwrite.
            out.untouched[stored.key] = (current["resourceType"], current["id"], _version(current))
            continue
        write = _write_for(ctx, stored, planned.get(stored.key), current, careplan_ref)
        if write is None:  # nothing to withdraw: settled, so it is not pending for ever
            out.untouched[stored.key] = _settled(stored, current)
            continue
        grows = grows or write.id is None
        out.add(write, stored.key)
    ended = ctx.enrolment.status != "active"
    # An ended enrolment's CarePlan is closed with the first apply that settles its actions.
    if (grows and out.writes) or ctx.enrolment.careplan_id is None or (ended and pending):
        out.add(_careplan(ctx, all_actions, title), None)
    return out


def _ours_final(current: Mapping[str, Any], stored: StoredAction) -> bool:
    # A Task the engine itself cancelled or failed earlier may be written again by the engine.
    reason = ((current.get("statusReason") or {}).get("coding") or [{}])[0].get("code")
    return reason in {NO_LONGER_APPLIES, "window-closed", "not-applicable"} and \
        stored.status != Status.DECLINED.value


def _write_for(ctx: WriteContext, stored: StoredAction, action: PlannedAction | None,
               current: dict[str, Any] | None, careplan_ref: str) -> Write | None:
    known_id = (current or {}).get("id") or stored.fhir_id
    version = _version(current) or stored.fhir_version
    if action is None:  # vanished: it no longer applies, or the patient was withdrawn
        if current is None and known_id and stored.fhir_type == "CommunicationRequest":
            current = _request_as_written(ctx, stored, careplan_ref)  # not read back
        if current is None or current.get("status") in HUMAN_FINAL | FINAL_REQUEST_STATUSES:
            return None
        code, text = _withdrawal_reason(ctx.enrolment)
        return Write(withdraw(current, code, text, now=ctx.now), id=known_id, version=version)
    resource = _resource_for(ctx, action, current, careplan_ref)
    return Write(resource, id=known_id, version=version) if known_id else Write(resource)


def _resource_for(ctx: WriteContext, action: PlannedAction, current: Mapping[str, Any] | None,
                  careplan_ref: str) -> dict[str, Any]:
    encounter = _encounter_id(ctx.enrolment)
    pathway_canonical = f"{pathway_canonical_url(ctx.enrolment.pathway_id)}|{ctx.pathway_version}"
    if action.kind == "task":
        authored = (current or {}).get("authoredOn")
        return task_for(action, patient_id=ctx.patient_id, encounter_id=encounter,
                        careplan_ref=careplan_ref, pathway_canonical=pathway_canonical,
                        identifier_system=ctx.system, now=ctx.now,
                        authored_on=datetime.fromisoformat(authored) if authored else None)
    recipient = f"Patient/{ctx.patient_id}" if action.kind == "patient-message" else None
    return communication_request_for(action, patient_id=ctx.patient_id, encounter_id=encounter,
                                     identifier_system=ctx.system, now=ctx.now,
                                     careplan_ref=careplan_ref, recipient=recipient)


def _withdrawal_reason(enrolment: Enrolment) -> tuple[str, str]:
    if enrolment.status == "exited":
        return WITHDRAWN, f"withdrawn from the pathway: {enrolment.exit_reason or 'no reason given'}"
    return NO_LONGER_APPLIES, "no longer applies to this patient"


def _settled(stored: StoredAction, current: Mapping[str, Any] | None) -> tuple[str, str | None, str | None]:
    if current is not None:
        return current["resourceType"], current.get("id"), _version(current)
    kind = stored.fhir_type or ("Task" if stored.kind == "task" else "CommunicationRequest")
    return kind, stored.fhir_id, stored.fhir_version


def _request_as_written(ctx: WriteContext, stored: StoredAction, careplan_ref: str) -> dict[str, Any]:
    """The CommunicationRequest as the engine wrote it while open (they are not read back)."""
    action = PlannedAction(
        key=stored.key, element_id=stored.element_id, occurrence=stored.occurrence, kind=stored.kind,
        role=stored.role, priority=stored.priority, title=stored.title,
        instructions=ctx.instructions.get(stored.element_id, stored.title), status=Status.DUE,
        opens=stored.opens, due=stored.due, closes=stored.closes)
    return _resource_for(ctx, action, None, careplan_ref)


def _encounter_id(enrolment: Enrolment) -> str | None:
    ref = enrolment.encounter_ref or ""
    return ref.split("/", 1)[1] if ref.startswith("Encounter/") else None


def _careplan(ctx: WriteContext, actions: Sequence[StoredAction], title: str) -> Write:
    refs = [_task_ref(a, ctx.system) for a in actions if a.kind == "task" and a.status != "cancelled"]
    resource = careplan_for(
        patient_id=ctx.patient_id, encounter_id=_encounter_id(ctx.enrolment),
        enrolment_id=ctx.enrolment.id, enrolled_at=ctx.enrolment.enrolled_at,
        pathway_canonical=f"{pathway_canonical_url(ctx.enrolment.pathway_id)}|{ctx.pathway_version}",
        identifier_system=ctx.system, task_refs=refs, title=title, now=ctx.now,
        ended_at=None if ctx.enrolment.status == "active" else ctx.now,
        withdrawn=(ctx.enrolment.exit_reason or "no reason given")
        if ctx.enrolment.status == "exited" else None)
    if ctx.enrolment.careplan_id:
        return Write(resource, id=ctx.enrolment.careplan_id, version=ctx.enrolment.careplan_version)
    return Write(resource)


def written_ids(response: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(type, id, version) of each transaction response entry, in request order."""
    out = []
    for entry in response.get("entry", []):
        resp = entry.get("response") or {}
        location = resp.get("location") or ""
        parts = location.split("/")
        if "_history" in parts:
            i = parts.index("_history")
            rtype, rid, version = parts[i - 2], parts[i - 1], parts[i + 1]
        else:
            resource = entry.get("resource") or {}
            rtype, rid, version = resource.get("resourceType", ""), resource.get("id", ""), \
                _version(resource)
        etag = resp.get("etag") or ""
        if etag.startswith('W/"'):
            version = etag[3:-1]
        out.append((rtype, rid, version))
    return out
