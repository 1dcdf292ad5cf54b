"""Tests for choosing enrolments to check, and parking failing ones."""

import uuid
from datetime import datetime, timedelta

from sqlmodel import Session

from store.enrolments import exit_enrolment, update_enrolment_context
from store.models import Enrolment
from store.scheduling import (
    clear_failures,
    due_for_check,
    list_parked,
    park,
    parked_patients,
    record_failure,
    record_patient_failure,
    unpark,
)
from tests.utils.store_factories import T0, create_enrolment, random_patient_ref

FAR_PAST = T0 - timedelta(days=3650)


def _scheduled(db: Session, next_check_at: datetime | None) -> Enrolment:
    enrolment = create_enrolment(session=db)
    return update_enrolment_context(
        session=db,
        enrolment_id=enrolment.id,
        anchors={},
        encounter_ref=None,
        ward=None,
        bed=None,
        next_check_at=next_check_at,
        careplan_id=None,
        careplan_version=None,
        at=T0,
    )


def _due_ids(db: Session, now: datetime, limit: int = 100) -> list[str]:
    return [e.id for e in due_for_check(session=db, now=now, limit=limit)]


def test_due_for_check_returns_active_enrolments_due_earliest_first(db: Session) -> None:
    later = _scheduled(db, FAR_PAST + timedelta(minutes=2))
    sooner = _scheduled(db, FAR_PAST + timedelta(minutes=1))
    future = _scheduled(db, FAR_PAST + timedelta(hours=1))
    unscheduled = _scheduled(db, None)

    due = _due_ids(db, now=FAR_PAST + timedelta(minutes=2))

    assert due == [sooner.id, later.id]
    assert future.id not in due and unscheduled.id not in due


def test_due_for_check_respects_limit(db: Session) -> None:
    first = _scheduled(db, FAR_PAST)
    _scheduled(db, FAR_PAST + timedelta(seconds=1))

    assert _due_ids(db, now=FAR_PAST + timedelta(minutes=1), limit=1) == [first.id]


def test_due_for_check_skips_parked_and_ended(db: Session) -> None:
    parked = _scheduled(db, FAR_PAST)
    ended = _scheduled(db, FAR_PAST)
    park(session=db, enrolment_id=parked.id, error="boom", at=T0)
    exit_enrolment(session=db, enrolment_id=ended.id, reason="cancelled", at=T0)

    due = _due_ids(db, now=FAR_PAST + timedelta(minutes=1))

    assert parked.id not in due and ended.id not in due


def test_due_for_check_claim_returns_rows(db: Session) -> None:
    enrolment = _scheduled(db, FAR_PAST)

    claimed = due_for_check(session=db, now=FAR_PAST, limit=10, claim=True)

    assert [e.id for e in claimed] == [enrolment.id]


def test_park_then_unpark_round_trip(db: Session) -> None:
    enrolment = create_enrolment(session=db)

    park(session=db, enrolment_id=enrolment.id, error="FHIR 500", at=T0)
    assert enrolment.id in [e.id for e in list_parked(session=db)]

    unparked = unpark(session=db, enrolment_id=enrolment.id, at=T0 + timedelta(hours=1))

    assert (unparked.parked_at, unparked.parked_error, unparked.failure_count) == (None, None, 0)
    assert enrolment.id not in [e.id for e in list_parked(session=db)]


def test_record_failure_parks_at_threshold(db: Session) -> None:
    enrolment = create_enrolment(session=db)

    for minute in range(2):
        record_failure(
            session=db,
            enrolment_id=enrolment.id,
            error="timeout",
            park_after=3,
            at=T0 + timedelta(minutes=minute),
        )
    assert enrolment.parked_at is None
    third = record_failure(
        session=db,
        enrolment_id=enrolment.id,
        error="still timing out",
        park_after=3,
        at=T0 + timedelta(minutes=2),
    )

    assert third.failure_count == 3
    assert (third.parked_at, third.parked_error) == (T0 + timedelta(minutes=2), "still timing out")


def test_clear_failures_resets_count_when_not_parked(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    record_failure(session=db, enrolment_id=enrolment.id, error="x", park_after=3, at=T0)

    cleared = clear_failures(session=db, enrolment_id=enrolment.id, at=T0)

    assert (cleared.failure_count, cleared.parked_error) == (0, None)


def test_parked_patients_of_a_batch_are_those_asked_one_by_one(db: Session) -> None:
    """The drain asks once per batch (or for one patient found late): the same answer for every
    kind of patient (no enrolment, one, several, ended ones, failures of their own)."""
    def patient(*states: str) -> str:
        """A patient with an enrolment per state: active, parked, ended, ended-parked."""
        ref = random_patient_ref()
        for state in states:
            enrolment = create_enrolment(session=db, patient_ref=ref, pathway_id=f"p-{uuid.uuid4().hex[:6]}")
            if "parked" in state:
                park(session=db, enrolment_id=enrolment.id, error="boom", at=T0)
            if state.startswith("ended"):
                exit_enrolment(session=db, enrolment_id=enrolment.id, reason="withdrew", at=T0)
        return ref

    patients = [patient(), patient("active"), patient("parked"), patient("active", "parked"),
                patient("parked", "parked"), patient("parked", "ended"), patient("ended-parked"),
                patient("ended")]
    failing, parked_alone = random_patient_ref(), random_patient_ref()
    for _ in range(3):
        record_patient_failure(session=db, patient_ref=parked_alone, error="boom", at=T0, park_after=3)
    record_patient_failure(session=db, patient_ref=failing, error="boom", at=T0, park_after=3)
    patients += [failing, parked_alone]
    db.flush()

    expected = {patients[2], patients[4], patients[5], parked_alone}  # worked out by hand
    assert parked_patients(session=db, patient_refs=patients) == expected  # the whole batch at once
    assert {ref for ref in patients if parked_patients(session=db, patient_refs=[ref])} == expected
    assert parked_patients(session=db, patient_refs=[]) == set()
