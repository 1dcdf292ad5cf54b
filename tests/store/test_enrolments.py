"""Tests for enrolling, finding, updating and ending enrolments."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from store.db import add_unless_exists, session_scope
from store.enrolments import (
    anchor_instants,
    complete_enrolment,
    enrol,
    exit_enrolment,
    find_enrolments,
    get_enrolment,
    record_careplan,
    update_enrolment_context,
)
from store.errors import EnrolmentNotFound
from store.models import Enrolment
from tests.utils.store_factories import T0, create_enrolment, random_patient_ref


def test_enrol_new_patient_is_created_active(db: Session) -> None:
    patient = random_patient_ref()

    enrolment, created = enrol(
        session=db,
        patient_ref=patient,
        pathway_id="lumbar-fusion",
        pathway_version=1,
        parameters={"procedure_type": "fusion"},
        enrolled_by="auto:Procedure/12",
        at=T0,
    )

    assert created
    stored = get_enrolment(session=db, enrolment_id=enrolment.id)
    assert stored is not None
    assert (stored.status, stored.parameters, stored.enrolled_by) == (
        "active",
        {"procedure_type": "fusion"},
        "auto:Procedure/12",
    )
    assert stored.enrolled_at == T0 and stored.failure_count == 0


def test_enrol_twice_returns_existing_unchanged(db: Session) -> None:
    first = create_enrolment(session=db)

    again, created = enrol(
        session=db,
        patient_ref=first.patient_ref,
        pathway_id=first.pathway_id,
        pathway_version=2,
        parameters={"procedure_type": "other"},
        enrolled_by="cli:user",
        at=T0 + timedelta(days=1),
    )

    assert not created
    assert again.id == first.id
    assert (again.pathway_version, again.enrolled_by) == (1, "cli:test")
    assert len(find_enrolments(session=db, patient_ref=first.patient_ref)) == 1


def test_enrol_same_patient_other_pathway_is_a_second_enrolment(db: Session) -> None:
    first = create_enrolment(session=db)

    second = create_enrolment(session=db, patient_ref=first.patient_ref, pathway_id="hip")

    assert second.id != first.id
    assert len(find_enrolments(session=db, patient_ref=first.patient_ref)) == 2


def test_add_unless_exists_lost_race_returns_winner_and_keeps_transaction(db: Session) -> None:
    winner = create_enrolment(session=db)
    loser = Enrolment(
        patient_ref=winner.patient_ref,
        pathway_id=winner.pathway_id,
        pathway_version=1,
        status="active",
        enrolled_at=T0,
        enrolled_by="auto:x",
        updated_at=T0,
    )
    lookups = iter([None, winner])  # the first lookup misses, as if the winner were not yet there

    row, created = add_unless_exists(session=db, row=loser, find_existing=lambda: next(lookups))

    assert (row.id, created) == (winner.id, False)
    assert get_enrolment(session=db, enrolment_id=winner.id) is not None


def test_find_enrolments_filters_combine(db: Session) -> None:
    patient = random_patient_ref()
    fusion = create_enrolment(session=db, patient_ref=patient)
    hip = create_enrolment(session=db, patient_ref=patient, pathway_id="hip")
    exit_enrolment(session=db, enrolment_id=hip.id, reason="surgery cancelled", at=T0)

    active = find_enrolments(session=db, patient_ref=patient, status="active")
    exited = find_enrolments(session=db, patient_ref=patient, pathway_id="hip", status="exited")

    assert [e.id for e in active] == [fusion.id]
    assert [e.id for e in exited] == [hip.id]


def test_find_enrolments_each_filter_alone_oldest_first(db: Session) -> None:
    """Each set of filters has its statement (built once): one filter's must not answer another's."""
    patient, pathway = random_patient_ref(), f"pathway-{random_patient_ref()}"
    later = create_enrolment(session=db, patient_ref=patient, pathway_id=pathway, at=T0 + timedelta(days=1))
    first = create_enrolment(session=db, patient_ref=patient, at=T0)
    other = create_enrolment(session=db, pathway_id=pathway, at=T0 + timedelta(days=2))
    exit_enrolment(session=db, enrolment_id=other.id, reason="surgery cancelled", at=T0)

    assert [e.id for e in find_enrolments(session=db, patient_ref=patient)] == [first.id, later.id]
    assert [e.id for e in find_enrolments(session=db, pathway_id=pathway)] == [later.id, other.id]
    assert [e.id for e in find_enrolments(session=db, pathway_id=pathway, status="exited")] == [other.id]
    assert [e.id for e in find_enrolments(session=db, patient_ref=patient, pathway_id=pathway)] == [later.id]
    everything = [e.id for e in find_enrolments(session=db)]
    assert {first.id, later.id, other.id} <= set(everything)
    assert everything.index(first.id) < everything.index(later.id) < everything.index(other.id)


def test_find_enrolments_unknown_status_raises(db: Session) -> None:
    with pytest.raises(ValueError):
        find_enrolments(session=db, status="paused")


def test_exit_enrolment_records_reason_and_stops_checks(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    _set_context(db, enrolment.id, next_check_at=T0 + timedelta(hours=1))

    exited = exit_enrolment(
        session=db, enrolment_id=enrolment.id, reason="cli unenrol", at=T0 + timedelta(hours=2)
    )

    assert (exited.status, exited.exit_reason, exited.next_check_at) == (
        "exited",
        "cli unenrol",
        None,
    )
    assert exited.updated_at == T0 + timedelta(hours=2)


def test_exit_enrolment_already_ended_is_left_alone(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    complete_enrolment(session=db, enrolment_id=enrolment.id, at=T0)

    after = exit_enrolment(session=db, enrolment_id=enrolment.id, reason="late", at=T0)

    assert (after.status, after.exit_reason) == ("completed", None)


def test_exit_enrolment_unknown_id_raises(db: Session) -> None:
    with pytest.raises(EnrolmentNotFound):
        exit_enrolment(session=db, enrolment_id="missing", reason="x", at=T0)


def test_update_enrolment_context_stores_anchors_as_utc_iso(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    cet = timezone(timedelta(hours=1))
    surgery_start = datetime(2025, 3, 11, 9, 30, tzinfo=cet)

    _set_context(db, enrolment.id, anchors={"surgery_start": surgery_start})
    db.expire_all()

    stored = get_enrolment(session=db, enrolment_id=enrolment.id)
    assert stored is not None
    assert stored.anchors == {"surgery_start": "2025-03-11T08:30:00+00:00"}
    assert anchor_instants(stored) == {"surgery_start": surgery_start}
    assert (stored.ward, stored.bed, stored.encounter_ref) == ("ward-4B", "12", "Encounter/9")
    assert (stored.careplan_id, stored.careplan_version) == ("cp-1", "3")


def test_record_careplan_sets_the_careplan_and_the_held_copy_reads_it(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    held = get_enrolment(session=db, enrolment_id=enrolment.id)
    later = datetime(2025, 3, 11, 10, tzinfo=timezone(timedelta(hours=1)))

    record_careplan(session=db, enrolment_id=enrolment.id, careplan_id="cp-9", careplan_version="2", at=later)

    assert held is not None
    assert (held.careplan_id, held.careplan_version, held.updated_at) == ("cp-9", "2", later)
    db.expire_all()
    stored = get_enrolment(session=db, enrolment_id=enrolment.id)
    assert stored is not None and (stored.careplan_id, stored.updated_at) == ("cp-9", later)
    assert (stored.status, stored.patient_ref) == (enrolment.status, enrolment.patient_ref)  # the rest kept


def test_record_careplan_unknown_id_raises(db: Session) -> None:
    with pytest.raises(EnrolmentNotFound):
        record_careplan(session=db, enrolment_id="missing", careplan_id="cp-1", careplan_version=None, at=T0)


def test_update_enrolment_context_writes_what_changed_and_the_held_copy_holds_it(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    updates: list[str] = []

    def statement(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        if sql.startswith("UPDATE enrolment"):
            updates.append(sql)
    event.listen(db.get_bind(), "before_cursor_execute", statement)
    try:
        held = _set_context(db, enrolment.id, next_check_at=T0 + timedelta(hours=4))
        _set_context(db, enrolment.id, next_check_at=T0 + timedelta(hours=4))  # nothing new: no UPDATE
        moved = _set_context(db, enrolment.id, next_check_at=T0 + timedelta(hours=8))
    finally:
        event.remove(db.get_bind(), "before_cursor_execute", statement)

    assert held is moved and not db.dirty  # the session's copy holds what is stored, nothing to flush
    assert len(updates) == 2 and "ward" in updates[0] and "ward" not in updates[1]
    assert "next_check_at" in updates[1] and "anchors" not in updates[1]
    db.expire_all()
    stored = get_enrolment(session=db, enrolment_id=enrolment.id)
    assert stored is not None and stored.next_check_at == T0 + timedelta(hours=8)
    assert (stored.ward, stored.bed, stored.careplan_id, stored.status) == ("ward-4B", "12", "cp-1", "active")


def _set_context(
    db: Session,
    enrolment_id: str,
    *,
    anchors: dict[str, datetime] | None = None,
    next_check_at: datetime | None = None,
) -> Enrolment:
    return update_enrolment_context(
        session=db,
        enrolment_id=enrolment_id,
        anchors=anchors or {},
        encounter_ref="Encounter/9",
        ward="ward-4B",
        bed="12",
        next_check_at=next_check_at,
        careplan_id="cp-1",
        careplan_version="3",
        at=datetime(2025, 3, 10, 9, tzinfo=UTC),
    )


def test_enrol_concurrent_same_patient_creates_one_enrolment(db_engine: Engine) -> None:
    patient = random_patient_ref()
    barrier = threading.Barrier(4)

    def enrol_once(worker: int) -> tuple[str, bool]:
        barrier.wait()
        with session_scope(db_engine) as session:
            enrolment, created = enrol(
                session=session,
                patient_ref=patient,
                pathway_id="lumbar-fusion",
                pathway_version=1,
                parameters={},
                enrolled_by=f"auto:worker-{worker}",
                at=T0,
            )
            return enrolment.id, created

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(enrol_once, range(4)))

    assert len({enrolment_id for enrolment_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
