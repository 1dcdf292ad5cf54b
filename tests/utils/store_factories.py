"""Factories for store rows in tests: enrolments, action states, pathway versions."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from store.actions import ActionState, action_key
from store.enrolments import enrol
from store.models import Enrolment, PathwayVersion
from store.pathways import register_pathway_version

T0 = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
PATHWAY_ID = "lumbar-fusion"


def random_patient_ref() -> str:
    return f"Patient/{uuid.uuid4().hex[:12]}"


def create_enrolment(
    *,
    session: Session,
    patient_ref: str | None = None,
    pathway_id: str = PATHWAY_ID,
    pathway_version: int = 1,
    parameters: dict[str, Any] | None = None,
    at: datetime = T0,
) -> Enrolment:
    enrolment, _ = enrol(
        session=session,
        patient_ref=patient_ref or random_patient_ref(),
        pathway_id=pathway_id,
        pathway_version=pathway_version,
        parameters={"procedure_type": "fusion"} if parameters is None else parameters,
        enrolled_by="cli:test",
        at=at,
    )
    return enrolment


def action_state(
    enrolment_id: str,
    element_id: str,
    *,
    occurrence: str = "1",
    status: str = "upcoming",
    **overrides: Any,
) -> ActionState:
    fields: dict[str, Any] = {
        "key": action_key(enrolment_id, element_id, occurrence),
        "element_id": element_id,
        "occurrence": occurrence,
        "kind": "task",
        "role": "nurse",
        "priority": "routine",
        "title": f"Do {element_id}",
        "opens": T0,
        "due": None,
        "closes": None,
        "status": status,
    }
    return ActionState(**(fields | overrides))


def create_pathway_version(
    *,
    session: Session,
    pathway_id: str | None = None,
    version: int = 1,
    content: str | None = None,
    at: datetime = T0,
) -> PathwayVersion:
    pathway_id = pathway_id or f"pathway-{uuid.uuid4().hex[:8]}"
    row, _ = register_pathway_version(
        session=session,
        pathway_id=pathway_id,
        version=version,
        content=content or f"id: {pathway_id}\nversion: {version}\n",
        title=f"Pathway {pathway_id}",
        at=at,
    )
    return row
