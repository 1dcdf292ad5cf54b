"""The store across processes: planned-action versions, patient locks, SQLite's one process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm.exc import StaleDataError

from store import locks
from store.actions import list_actions, sync_actions
from store.db import make_engine, make_session_factory, session_scope
from store.locks import (
    PatientLockTimeout,
    SingleProcessOnly,
    _lock_engine,
    claim_single_process,
    patient_lock,
)
from tests.utils.databases import sqlite_database
from tests.utils.store_factories import T0, action_state, create_enrolment

ROOT = Path(__file__).resolve().parents[2]


def test_a_lost_update_of_a_planned_action_is_detected(db_engine: Engine) -> None:
    """Two writers read version 1 of the same action; the second to commit gets StaleDataError
    instead of silently overwriting the first's change."""
    with session_scope(db_engine) as session:
        enrolment = create_enrolment(session=session)
        sync_actions(session=session, enrolment_id=enrolment.id, cause="evaluation", at=T0,
                     actions=[action_state(enrolment.id, "mobilise")])
    first, second = make_session_factory(db_engine)(), make_session_factory(db_engine)()
    try:
        row_b = list_actions(session=second, enrolment_id=enrolment.id)[0]
        # The second writer keeps what it read but ends its transaction (SQLite: one at a time).
        second.expunge(row_b)
        second.rollback()
        row_a = list_actions(session=first, enrolment_id=enrolment.id)[0]
        assert row_a.version == row_b.version == 1
        row_a.status = "due"
        first.commit()
        second.add(row_b)
        row_b.status = "cancelled"
        with pytest.raises(StaleDataError):
            second.commit()
    finally:
        first.close()
        second.close()
    with session_scope(db_engine) as session:
        stored = list_actions(session=session, enrolment_id=enrolment.id)[0]
    assert (stored.status, stored.version) == ("due", 2)


def test_sync_keeps_the_engine_reminder_schedule_without_a_rewrite(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        enrolment = create_enrolment(session=session)
        due = T0 + timedelta(hours=6)
        state = action_state(enrolment.id, "mobilise", due=due)
        sync_actions(session=session, enrolment_id=enrolment.id, cause="evaluation", at=T0,
                     actions=[state])
        moved = replace(state, remind_at=due - timedelta(hours=1),
                        escalations=((due + timedelta(hours=4), "charge_nurse"),))
        changes = sync_actions(session=session, enrolment_id=enrolment.id, cause="evaluation",
                               at=T0, actions=[moved])
        row = list_actions(session=session, enrolment_id=enrolment.id)[0]
        assert changes.unchanged == (state.key,) and row.revision == 1  # no FHIR rewrite for it
        assert row.remind_at == due - timedelta(hours=1)
        assert row.escalations == [[(due + timedelta(hours=4)).isoformat(), "charge_nurse"]]


async def test_patient_lock_excludes_a_second_holder_until_released(postgresql_url: str) -> None:
    """Two engines are two connection pools, as two processes would have."""
    one, two = make_engine(postgresql_url), make_engine(postgresql_url)
    try:
        async with patient_lock(one, "p-lock"):
            with pytest.raises(PatientLockTimeout):
                async with patient_lock(two, "p-lock", timeout=0.3):
                    pass
            async with patient_lock(two, "p-other", timeout=0.3):
                pass  # another patient is not blocked
        order: list[str] = []

        async def hold(engine: Engine, name: str, seconds: float) -> None:
            async with patient_lock(engine, "p-lock"):
                order.append(f"{name} in")
                await asyncio.sleep(seconds)
                order.append(f"{name} out")

        await asyncio.gather(hold(one, "a", 0.3), hold(two, "b", 0.0))
        assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    finally:
        one.dispose()
        two.dispose()


async def test_patient_lock_gives_its_connection_back_unlocked(postgresql_url: str) -> None:
    """Whatever the block does, the lock connection goes back to its pool, and the lock with it."""
    one, two = make_engine(postgresql_url), make_engine(postgresql_url)
    try:
        with pytest.raises(RuntimeError):
            async with patient_lock(one, "p-back"):
                raise RuntimeError("the apply failed")
        async with patient_lock(one, "p-back"):
            pass
        async with patient_lock(two, "p-back", timeout=0):  # free at once: taken at the first try
            pass
        assert _lock_engine(one).pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        one.dispose()
        two.dispose()


def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time\n"
             "from store.db import make_engine\nfrom store.locks import claim_single_process\n"
             f"claim_single_process(make_engine({url!r}))\nprint('claimed', flush=True)\n"
             "time.sleep(60)"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
            engine = make_engine(url)
            with pytest.raises(SingleProcessOnly, match=r"ERAS_DATABASE_URL to a PostgreSQL URL"):
                claim_single_process(engine)
        finally:
            holder.kill()
            holder.wait()
        claim_single_process(engine)  # the holder is gone: the OS released its lock
        claim_single_process(engine)  # and claiming again in the same process is harmless
        engine.dispose()


@pytest.mark.parametrize("hop", ["_connect_and_try", "_unlock_and_close"])
async def test_an_apply_stopped_during_a_lock_hop_leaves_the_lock_free(
        postgresql_url: str, monkeypatch: pytest.MonkeyPatch, hop: str) -> None:
    """SIGTERM while the lock's statement runs on its thread: the thread finishes all the same,
    and the lock (taken, or being given back) must not stay on a connection nobody holds, or
    this patient's applies would wait for it until the process ends."""
    one, two = make_engine(postgresql_url), make_engine(postgresql_url)
    original = getattr(locks, hop)
    on_thread = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(*args: object) -> object:
        loop.call_soon_threadsafe(on_thread.set)
        time.sleep(0.3)  # the stop arrives while this hop is on its thread
        return original(*args)

    monkeypatch.setattr(locks, hop, slow)
    try:
        async def apply() -> None:
            async with patient_lock(one, "p-stopped"):
                await asyncio.sleep(0)

        running = asyncio.create_task(apply())
        await asyncio.wait_for(on_thread.wait(), timeout=10)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await asyncio.sleep(0.5)  # past the hop, whatever became of it
        async with patient_lock(two, "p-stopped", timeout=0):  # free: taken at the first try
            pass
        assert _lock_engine(one).pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        one.dispose()
        two.dispose()
