"""Seeding a ward's worklist for tests: an enrolment with open actions, and their Tasks on a FHIR server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from store.models import AccessLogEntry, ElementStatus, Enrolment, PlannedActionRow

PATHWAY = "lumbar_fusion"


def seed_enrolment(
    engine: Engine,
    *,
    ward: str,
    bed: str = "Bed 3",
    patient_id: str | None = None,
    now: datetime | None = None,
) -> Enrolment:
    """An active enrolment on `ward`, operated on yesterday (POD1)."""
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        row = Enrolment(
            patient_ref=f"Patient/{patient_id or uuid.uuid4().hex[:12]}",
            pathway_id=PATHWAY,
            pathway_version=1,
            status="active",
            enrolled_at=now,
            enrolled_by="test",
            updated_at=now,
            ward=ward,
            bed=bed,
            anchors={"surgery_end": (now - timedelta(days=1)).isoformat()},
        )
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def seed_action(
    engine: Engine,
    enrolment: Enrolment,
    element_id: str,
    *,
    due: datetime | None,
    opens: datetime | None = None,
    closes: datetime | None = None,
    role: str = "nurse",
    fhir_id: str | None = None,
    fhir_version: str | None = None,
    status: str = "due",
) -> PlannedActionRow:
    """One open task for the enrolment, optionally with its Task on a FHIR server."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        row = PlannedActionRow(
            key=f"{enrolment.id}:{element_id}:{uuid.uuid4().hex[:6]}",
            enrolment_id=enrolment.id,
            element_id=element_id,
            occurrence="1",
            kind="task",
            role=role,
            priority="routine",
            title=f"Task {element_id}",
            opens=opens or now - timedelta(hours=1),
            due=due,
            closes=closes,
            status=status,
            ward=enrolment.ward,
            fhir_type="Task" if fhir_id else None,
            fhir_id=fhir_id,
            fhir_version=fhir_version,
            updated_at=now,
            fhir_synced_revision=1 if fhir_id else None,
        )
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def create_task(base_url: str, patient_id: str, *, token: str | None = None) -> dict[str, Any]:
    """A ready Task on the FHIR server (synchronously, for seeding); `token` for a protected one."""
    task = {
        "resourceType": "Task",
        "status": "ready",
        "intent": "order",
        "for": {"reference": f"Patient/{patient_id}"},
        "identifier": [{"system": "urn:test:action", "value": uuid.uuid4().hex}],
    }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{base_url.rstrip('/')}/Task", json=task, headers=headers)
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return created


def clear_ward(engine: Engine, enrolment_ids: list[str]) -> None:
    """Remove what the seed made, and the audit entries, so other tests see the database as before."""
    with Session(engine) as session:
        keys = select_keys(session, enrolment_ids)
        session.exec(delete(ElementStatus).where(col(ElementStatus.enrolment_id).in_(enrolment_ids)))  # type: ignore[call-overload]
        session.exec(delete(PlannedActionRow).where(col(PlannedActionRow.key).in_(keys)))  # type: ignore[call-overload]
        session.exec(delete(Enrolment).where(col(Enrolment.id).in_(enrolment_ids)))  # type: ignore[call-overload]
        session.exec(delete(AccessLogEntry))  # type: ignore[call-overload]
        session.commit()


def select_keys(session: Session, enrolment_ids: list[str]) -> list[str]:
    return list(
        session.exec(select(PlannedActionRow.key).where(col(PlannedActionRow.enrolment_id).in_(enrolment_ids)))
    )
