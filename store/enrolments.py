"""Enrolments: a patient on a pathway version, with the context last found for them."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from store.db import add_unless_exists, expire_held
from store.errors import EnrolmentNotFound
from store.models import Enrolment, PlannedActionRow
from store.types import EnrolmentStatus, as_utc


def enrol(
    *,
    session: Session,
    patient_ref: str,
    pathway_id: str,
    pathway_version: int,
    parameters: Mapping[str, Any],
    enrolled_by: str,
    at: datetime,
) -> tuple[Enrolment, bool]:
    """Enrol a patient on a pathway; True when new, else the existing enrolment unchanged.

    One enrolment per (patient, pathway), whatever its status: enrolling again, even after
    an exit, returns the existing row.
    """
    at = as_utc(at)
    row = Enrolment(
        patient_ref=patient_ref,
        pathway_id=pathway_id,
        pathway_version=pathway_version,
        parameters=dict(parameters),
        anchors={},
        status=EnrolmentStatus.ACTIVE,
        enrolled_at=at,
        enrolled_by=enrolled_by,
        updated_at=at,
    )
    return add_unless_exists(
        session=session,
        row=row,
        find_existing=lambda: _find_one(
            session=session, patient_ref=patient_ref, pathway_id=pathway_id
        ),
    )


def _find_one(*, session: Session, patient_ref: str, pathway_id: str) -> Enrolment | None:
    statement = select(Enrolment).where(
        Enrolment.patient_ref == patient_ref, Enrolment.pathway_id == pathway_id
    )
    return session.exec(statement).first()


def get_enrolment(*, session: Session, enrolment_id: str) -> Enrolment | None:
    return session.get(Enrolment, enrolment_id)


def require_enrolment(*, session: Session, enrolment_id: str) -> Enrolment:
    """The enrolment, or EnrolmentNotFound."""
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None:
        raise EnrolmentNotFound(enrolment_id)
    return enrolment


def find_enrolments(
    *,
    session: Session,
    patient_ref: str | None = None,
    pathway_id: str | None = None,
    status: str | None = None,
) -> list[Enrolment]:
    """Enrolments matching every filter given, oldest first."""
    filters = {"patient_ref": patient_ref, "pathway_id": pathway_id,
               "status": None if status is None else EnrolmentStatus(status)}
    given = {name: value for name, value in filters.items() if value is not None}
    return list(session.exec(_find_statement(tuple(given)), params=given))


@cache
def _find_statement(filters: tuple[str, ...]) -> Any:
    """`find_enrolments`' statement for these filters, built once: every apply runs it, and
    building it and its cache key cost as much as running it."""
    statement = select(Enrolment).order_by(col(Enrolment.enrolled_at), col(Enrolment.id))
    for name in filters:
        statement = statement.where(getattr(Enrolment, name) == bindparam(name))
    return statement


def exit_enrolment(*, session: Session, enrolment_id: str, reason: str, at: datetime) -> Enrolment:
    """Take a patient off the pathway; an enrolment already ended is left as it is."""
    return _end(
        session=session,
        enrolment_id=enrolment_id,
        status=EnrolmentStatus.EXITED,
        reason=reason,
        at=at,
    )


def complete_enrolment(*, session: Session, enrolment_id: str, at: datetime) -> Enrolment:
    """Mark the pathway finished; an enrolment already ended is left as it is."""
    return _end(
        session=session,
        enrolment_id=enrolment_id,
        status=EnrolmentStatus.COMPLETED,
        reason=None,
        at=at,
    )


def _end(
    *,
    session: Session,
    enrolment_id: str,
    status: EnrolmentStatus,
    reason: str | None,
    at: datetime,
) -> Enrolment:
    enrolment = require_enrolment(session=session, enrolment_id=enrolment_id)
    if enrolment.status != EnrolmentStatus.ACTIVE:
        return enrolment
    enrolment.status = status
    enrolment.exit_reason = reason
    enrolment.next_check_at = None
    enrolment.updated_at = as_utc(at)
    session.add(enrolment)
    session.flush()
    return enrolment


def update_enrolment_context(
    *,
    session: Session,
    enrolment_id: str,
    anchors: Mapping[str, datetime],
    encounter_ref: str | None,
    ward: str | None,
    bed: str | None,
    next_check_at: datetime | None,
    careplan_id: str | None,
    careplan_version: str | None,
    at: datetime,
) -> Enrolment:
    """Record what the last evaluation found; the ward is copied onto the planned actions.

    Every apply runs it: the columns that changed (as the ORM's flush would tell) are written
    with one UPDATE, without a flush, and the session's copy of the enrolment holds them.
    """
    enrolment = require_enrolment(session=session, enrolment_id=enrolment_id)
    found = {"anchors": {name: as_utc(instant).isoformat() for name, instant in anchors.items()},
             "encounter_ref": encounter_ref, "bed": bed,
             "next_check_at": None if next_check_at is None else as_utc(next_check_at),
             "careplan_id": careplan_id, "careplan_version": careplan_version, "ward": ward,
             "updated_at": as_utc(at)}
    changed = {name: value for name, value in found.items() if getattr(enrolment, name) != value}
    if not changed:
        return enrolment
    session.execute(_context_statement(tuple(changed)),
                    {"c_id": enrolment_id, **{f"c_{name}": value for name, value in changed.items()}})
    for name, value in changed.items():
        set_committed_value(enrolment, name, value)
    if "ward" in changed:
        session.exec(
            update(PlannedActionRow)
            .where(col(PlannedActionRow.enrolment_id) == enrolment_id)
            .values(ward=ward)
        )
    return enrolment


_ENROLMENTS = Enrolment.__table__  # type: ignore[attr-defined]


@cache
def _context_statement(columns: tuple[str, ...]) -> Any:
    """One enrolment's UPDATE of these columns (parameters `c_id`, `c_<column>`), built once."""
    return (update(_ENROLMENTS).where(_ENROLMENTS.c.id == bindparam("c_id"))
            .values({name: bindparam(f"c_{name}") for name in columns}))


def record_careplan(*, session: Session, enrolment_id: str, careplan_id: str, careplan_version: str | None,
                    at: datetime) -> None:
    """Note the CarePlan the FHIR server wrote for the enrolment: one UPDATE, the row not loaded
    (every apply that writes runs it); a copy the session holds is read again on use."""
    values = {"careplan_id": careplan_id, "careplan_version": careplan_version, "updated_at": as_utc(at)}
    done = session.execute(_context_statement(tuple(values)),
                           {"c_id": enrolment_id, **{f"c_{name}": value for name, value in values.items()}})
    if not done.rowcount:  # type: ignore[attr-defined]
        raise EnrolmentNotFound(enrolment_id)
    expire_held(session, Enrolment, [enrolment_id])


def anchor_instants(enrolment: Enrolment) -> dict[str, datetime]:
    """The enrolment's anchors as UTC datetimes."""
    return {name: datetime.fromisoformat(value) for name, value in enrolment.anchors.items()}


def move_enrolments(*, session: Session, from_ref: str, to_ref: str, at: datetime) -> list[str]:
    """A patient merge (HL7 A40): the merged-away patient's enrolments move to the survivor.

    Where the survivor is already on that pathway, the moved one is exited instead (one
    enrolment per patient and pathway). Returns the ids of the enrolments that moved.
    """
    moved = []
    for enrolment in find_enrolments(session=session, patient_ref=from_ref):
        if _find_one(session=session, patient_ref=to_ref, pathway_id=enrolment.pathway_id):
            exit_enrolment(session=session, enrolment_id=enrolment.id,
                           reason=f"merged into {to_ref}", at=at)
            continue
        enrolment.patient_ref = to_ref
        enrolment.updated_at = as_utc(at)
        session.add(enrolment)
        moved.append(enrolment.id)
    session.flush()
    return moved


def enrolled_among(*, session: Session, patient_refs: Iterable[str]) -> set[str]:
    """Which of these patients have an enrolment (of any status): one query for a whole batch."""
    refs = sorted(set(patient_refs))
    if not refs:
        return set()
    return set(session.exec(_ENROLLED_AMONG, params={"refs": refs}))


# Built once: the intake runs it for every transaction, and building the statement and its cache
# key each time cost more than running it.
_ENROLLED_AMONG = (select(Enrolment.patient_ref)
                   .where(col(Enrolment.patient_ref).in_(bindparam("refs", expanding=True))).distinct())
