"""Seeding a ward's worklist for tests: an enrolment with open actions, and their Tasks on a FHIR server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, delete, insert
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


def seed_ward_tasks(engine: Engine, now: datetime, *, ward: str, total: int, on_ward: int,
                    per_patient: int = 20) -> list[str]:
    """`total` tasks in bulk, `per_patient` per enrolment: `on_ward` of them open on `ward` (due
    from 10 h ago to `per_patient` - 10 h ahead), the rest over 49 other wards, a third of those
    done. Returns the enrolment ids (for `clear_ward`)."""
    enrolments, actions = [], []
    for p in range(total // per_patient):
        here = p < on_ward // per_patient
        eid = str(uuid.uuid4())
        enrolments.append({
            "id": eid, "patient_ref": f"Patient/b{p}-{eid[:6]}", "pathway_id": PATHWAY, "pathway_version": 1,
            "parameters": {}, "anchors": {}, "status": "active", "enrolled_at": now, "enrolled_by": "bench",
            "updated_at": now, "ward": ward if here else f"W{p % 49}", "bed": f"Bed {p % 30}",
            "failure_count": 0})
        for a in range(per_patient):
            actions.append({
                "key": f"{eid}:{a}", "enrolment_id": eid, "element_id": f"e{a}", "occurrence": "1",
                "kind": "task", "role": "nurse", "priority": "routine", "title": f"Element {a}",
                "opens": now - timedelta(hours=a), "due": now + timedelta(hours=a - 10),
                "status": "due" if here or a % 3 else "done", "ward": enrolments[-1]["ward"],
                "updated_at": now, "revision": 1})
    with engine.begin() as connection:
        connection.execute(insert(Enrolment), enrolments)
        for start in range(0, len(actions), 10_000):
            connection.execute(insert(PlannedActionRow), actions[start : start + 10_000])
    return [e["id"] for e in enrolments]
