"""An apply's store transactions: an enrolled patient's apply reads its enrolments, evaluates and
keeps the plan in one (and settles there when nothing goes to FHIR), but a new enrolment or a
withdrawal is committed on its own first, so that a failing evaluation or sync does not undo it.
Against the sandbox FHIR server, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

import flows.apply
from flows.apply import apply_patient
from store.db import session_scope
from store.enrolments import find_enrolments
from tests.flows.test_apply import NOW, SURGERY, booked_patient, seed
from tests.flows.test_withdrawal import _booked_then_revoked
from tests.utils import ehr


@contextmanager
def commits(engine: Engine) -> Iterator[list[int]]:
    """[the transactions committed on `engine` in the block]."""
    counted = [0]

    def commit(*_: Any) -> None:
        counted[0] += 1
    event.listen(engine, "commit", commit)
    try:
        yield counted
    finally:
        event.remove(engine, "commit", commit)


def failing(*_: Any, **__: Any) -> Any:
    raise RuntimeError("failed on purpose")


async def test_an_enrolled_patients_apply_keeps_its_plan_in_one_transaction(make_runtime,
                                                                           new_patient_id) -> None:
    end = SURGERY + timedelta(hours=3)
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=False)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=3)),
                   ehr.surgery(new_patient_id, SURGERY, end))
        await apply_patient(rt, new_patient_id, now=end)
        await seed(rt.ehr, ehr.pain(new_patient_id, end + timedelta(hours=1), 7))
        with commits(rt.db) as written:
            changed = await apply_patient(rt, new_patient_id, now=end + timedelta(hours=1, minutes=5))
        with commits(rt.db) as settled:
            again = await apply_patient(rt, new_patient_id, now=end + timedelta(hours=1, minutes=5))
    # The plan (enrolments read in it), then the ids the FHIR write gave; with nothing to write, one.
    assert changed.written > 0 and written == [2]
    assert again.written == 0 and settled == [1]


async def test_a_new_enrolment_stays_when_its_first_evaluation_fails(make_runtime, new_patient_id,
                                                                    monkeypatch) -> None:
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=False)
        monkeypatch.setattr(flows.apply, "evaluate", failing)
        with pytest.raises(RuntimeError, match="on purpose"):
            await apply_patient(rt, new_patient_id, now=NOW)
        with session_scope(rt.db) as session:
            enrolments = find_enrolments(session=session, patient_ref=f"Patient/{new_patient_id}")
    assert [(e.pathway_id, e.status) for e in enrolments] == [("lumbar_fusion", "active")]


async def test_a_withdrawal_stays_when_the_plan_then_fails(make_runtime, new_patient_id, monkeypatch) -> None:
    async with make_runtime() as rt:
        booking = await _booked_then_revoked(rt, new_patient_id)
        monkeypatch.setattr(flows.apply, "sync_actions", failing)
        with pytest.raises(RuntimeError, match="on purpose"):
            await apply_patient(rt, new_patient_id, now=NOW + timedelta(hours=1))
        with session_scope(rt.db) as session:
            [enrolment] = find_enrolments(session=session, patient_ref=f"Patient/{new_patient_id}")
    assert (enrolment.status, enrolment.exit_reason) == (
        "exited", f"surgery cancelled (ServiceRequest/{booking['id']} revoked)")


@contextmanager
def commit_log(rt: Any) -> Iterator[list[str]]:
    """In order: each commit on the runtime's store ("FULL": it waited for the disk; "NORMAL":
    it did not; "PostgreSQL") and each FHIR transaction the apply sent ("FHIR write")."""
    log: list[str] = []

    def commit(connection: Any) -> None:
        if connection.dialect.name == "sqlite":
            log.append(connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2 and "FULL" or "NORMAL")
        else:
            log.append("PostgreSQL")
    sent = rt.tasks.transaction

    async def transaction(bundle: Any) -> Any:
        log.append("FHIR write")
        return await sent(bundle)
    event.listen(rt.db, "commit", commit)
    rt.tasks.transaction = transaction
    rt._coalescers.clear()  # each made again, around the wrapper
    try:
        yield log
    finally:
        event.remove(rt.db, "commit", commit)
        rt.tasks.transaction = sent
        rt._coalescers.clear()


async def test_a_new_enrolment_is_on_disk_before_its_tasks_are_written_and_the_rest_need_not_wait(
        make_runtime, new_patient_id) -> None:
    """A new enrolment's id names its Tasks: a power cut must not undo it once they are written,
    so a commit that waits for the disk comes between it and the FHIR write. The rest of the
    apply's commits are redone if lost (an event not settled is applied again) and, on SQLite,
    do not wait (store.db.redoable)."""
    end = SURGERY + timedelta(hours=3)
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=False)
        with commit_log(rt) as enrolling:
            await apply_patient(rt, new_patient_id, now=NOW)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=3)),
                   ehr.surgery(new_patient_id, SURGERY, end),
                   ehr.pain(new_patient_id, end + timedelta(hours=1), 7))
        with commit_log(rt) as enrolled:
            await apply_patient(rt, new_patient_id, now=end + timedelta(hours=1, minutes=5))
    if rt.db.dialect.name == "postgresql":
        assert set(enrolling) | set(enrolled) == {"PostgreSQL", "FHIR write"}
        return
    # The enrolment (no wait), the plan (waits: the enrolment with it), the FHIR write, its ids;
    # then the pass that reads the record again.
    first_write = enrolling.index("FHIR write")
    assert enrolling[:2] == ["NORMAL", "FULL"] and first_write == 2, enrolling
    assert set(enrolling[first_write:]) == {"FHIR write", "NORMAL"}, enrolling
    assert enrolled == ["NORMAL", "FHIR write", "NORMAL"]
