"""What a nurse does on the worklist: complete, decline, reassign, written to the EHR first, then the store.

The Task is updated with If-Match on the version the store last wrote: if the EHR changed it
meanwhile, nothing is overwritten and the nurse is told (`TaskChanged`). No database
transaction is open during an EHR call: the action is read in one short transaction, the EHR
written, then the outcome recorded in another (which checks the action is still open). The
store work runs in a worker thread so the API's event loop never waits on the database.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine
from sqlmodel import Session

from engine.model import Element, Pathway
from engine.plan import plan_of
from engine.results import OPEN_STATUSES
from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirConflictError
from fhir_adapters.evidence import (
    completed_request,
    completed_task,
    declined_request,
    declined_task,
    evidence_for,
    reassigned_task,
)
from store.actions import require_action
from store.db import reading, session_scope
from store.models import Enrolment, PlannedActionRow
from store.outcomes import complete_action, decline_action
from store.worklist import action_with_enrolment, note_fhir_version, reassign_action

DECLINE_REASONS = ("patient-refused", "contraindicated", "not-applicable", "deferred-by-clinician")


class UnknownDeclineReason(ValueError):
    """The reason is not one the pathway's terminology documents."""


class TaskChanged(Exception):
    """The Task changed in the EHR since the worklist last wrote it; nothing was overwritten."""


class ActionClosed(Exception):
    """The action is no longer open (done, declined, missed or cancelled)."""


class NotReassignable(ActionClosed):
    """A patient-facing request (CommunicationRequest) has no performer role to give away."""


@dataclass(frozen=True)
class WorklistWriter:
    """Pathways (for element details), the FHIR server holding Tasks (or None), evidence identifiers."""

    pathways: Mapping[str, Pathway]
    fhir: FhirClient | None
    evidence_system: str

    def element(self, pathway_id: str, element_id: str) -> Element | None:
        """The element as the loaded pathway defines it, or None if that pathway is not loaded."""
        pathway = self.pathways.get(pathway_id)
        if pathway is None:
            return None
        return next((e for e in pathway.elements if e.id == element_id), None)

    def decline_reasons(self, pathway_id: str) -> tuple[str, ...]:
        """The reasons the pathway's terminology documents (a site may add its own)."""
        pathway = self.pathways.get(pathway_id)
        return tuple(plan_of(pathway).terminology.decline_reasons) if pathway else DECLINE_REASONS


Store = Callable[[Session], None]


def read_action(db: Engine, key: str) -> tuple[PlannedActionRow, Enrolment]:
    """The action and its enrolment as they are now (detached copies), or ActionNotFound.

    Sync: callers on an event loop run it in a worker thread. Its short transaction is over
    before any EHR call is made.
    """
    with session_scope(reading(db)) as session:
        action, enrolment = action_with_enrolment(session=session, key=key)
        session.expunge_all()
    return action, enrolment


async def complete(
    writer: WorklistWriter,
    db: Engine,
    action: PlannedActionRow,
    enrolment: Enrolment,
    *,
    by: str,
    at: datetime,
    value: float | str | None = None,
    also: Store | None = None,
) -> PlannedActionRow:
    """Task completed and evidence written in the EHR, then the action done in the store."""
    _require_open(action)
    version = None
    if writer.fhir is not None and action.fhir_id:
        version = await _put_task(writer.fhir, action, lambda task: (
            completed_task(task, now=at) if _is_task(task) else completed_request(task)))
        await _write_evidence(writer, writer.fhir, action, enrolment, at=at, value=value)

    def store(session: Session) -> PlannedActionRow:
        return complete_action(session=session, key=action.key, by=by, at=at, cause="worklist: completed")

    return await _record(db, action, version, store, also)


async def decline(
    writer: WorklistWriter,
    db: Engine,
    action: PlannedActionRow,
    *,
    by: str,
    at: datetime,
    reason: str,
    text: str | None,
    also: Store | None = None,
    reasons: Collection[str] = DECLINE_REASONS,
) -> PlannedActionRow:
    """Task cancelled with the coded reason in the EHR, then the action declined in the store."""
    if reason not in reasons:
        raise UnknownDeclineReason(f"decline reason must be one of {', '.join(reasons)}")
    _require_open(action)
    version = None
    if writer.fhir is not None and action.fhir_id:
        version = await _put_task(
            writer.fhir, action, lambda task: (declined_task if _is_task(task) else declined_request)(
                task, reason, text or reason, now=at)
        )

    def store(session: Session) -> PlannedActionRow:
        return decline_action(session=session, key=action.key, reason=reason, text=text, by=by, at=at,
                              cause="worklist: declined")

    return await _record(db, action, version, store, also)


async def reassign(
    writer: WorklistWriter, db: Engine, action: PlannedActionRow, *, role: str, at: datetime,
    also: Store | None = None,
) -> PlannedActionRow:
    """Task given to another performer role in the EHR, then in the store."""
    _require_open(action)
    if action.fhir_type == "CommunicationRequest":
        raise NotReassignable("a request to the patient has no performer role to reassign")
    version = None
    if writer.fhir is not None and action.fhir_id:
        version = await _put_task(writer.fhir, action, lambda task: reassigned_task(task, role, now=at))

    def store(session: Session) -> PlannedActionRow:
        return reassign_action(session=session, key=action.key, role=role, at=at)

    return await _record(db, action, version, store, also)


def _require_open(action: PlannedActionRow) -> None:
    if action.status not in OPEN_STATUSES:
        raise ActionClosed(f"this task is already {action.status}")


async def _record(
    db: Engine,
    action: PlannedActionRow,
    version: str | None,
    change: Callable[[Session], PlannedActionRow],
    also: Store | None,
) -> PlannedActionRow:
    """One short transaction after the EHR answered: the Task version, the change, `also`."""

    def write() -> PlannedActionRow:
        with session_scope(db) as session:
            current = require_action(session=session, key=action.key)
            _require_open(current)  # another nurse (or the runtime) may have closed it meanwhile
            if version is not None:
                note_fhir_version(session=session, key=action.key, version=version)
            row = change(session)
            _keep_synced(row)
            if also is not None:
                also(session)
            session.flush()
            session.expunge(row)
            return row

    return await anyio.to_thread.run_sync(write)


def _keep_synced(row: PlannedActionRow) -> None:
    # The Task already says what the store now says: no pending FHIR write for this revision.
    if row.fhir_id and row.fhir_synced_revision is not None:
        row.fhir_synced_revision = row.revision


async def _put_task(
    fhir: FhirClient, action: PlannedActionRow, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> str | None:
    """PUT the changed Task (or CommunicationRequest), conditional on the version the store
    knows; its new version."""
    assert action.fhir_id is not None
    task = await fhir.read(action.fhir_type or "Task", action.fhir_id)
    if action.fhir_version and task.get("meta", {}).get("versionId") != action.fhir_version:
        raise TaskChanged(_changed_message())
    try:
        updated, _etag = await fhir.update(change(task), if_match=action.fhir_version)
    except FhirConflictError:
        raise TaskChanged(_changed_message()) from None
    version = updated.get("meta", {}).get("versionId")
    return str(version) if version is not None else None


def _is_task(resource: Mapping[str, Any]) -> bool:
    return resource.get("resourceType") != "CommunicationRequest"


def _changed_message() -> str:
    return (
        "This task was changed in the EHR since the worklist last saw it; nothing was saved. "
        "Reload the list and check the task before acting again."
    )


async def _write_evidence(
    writer: WorklistWriter,
    fhir: FhirClient,
    action: PlannedActionRow,
    enrolment: Enrolment,
    *,
    at: datetime,
    value: float | str | None,
) -> None:
    """The Procedure or Observation the element's evidence names, created once per action."""
    element = writer.element(enrolment.pathway_id, action.element_id)
    resource = _evidence(writer, element, enrolment, action, at=at, value=value)
    if resource is None:
        return
    ident = resource["identifier"][0]
    await fhir.create(resource, if_none_exist=f"identifier={ident['system']}|{ident['value']}")


def _evidence(
    writer: WorklistWriter,
    element: Element | None,
    enrolment: Enrolment,
    action: PlannedActionRow,
    *,
    at: datetime,
    value: float | str | None,
) -> dict[str, Any] | None:
    if element is None:
        return None
    record = element.action.record if element.action else None
    name = (
        record.concept
        if record is not None and value is not None
        else next(iter(element.evidence.concepts), None)
    )
    terminology = plan_of(writer.pathways[enrolment.pathway_id]).terminology
    if name is None or name not in terminology.concepts:
        return None
    return evidence_for(
        terminology.concept(name),
        patient_id=enrolment.patient_ref.removeprefix("Patient/"),
        encounter_id=(enrolment.encounter_ref or "").removeprefix("Encounter/") or None,
        identifier=(writer.evidence_system, f"{action.key}:evidence"),
        at=at,
        value=value,
        unit=record.unit if record is not None else None,
    )
