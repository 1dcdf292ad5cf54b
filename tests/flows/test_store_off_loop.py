"""On PostgreSQL an apply's store work waits for the server off the event loop (Runtime.in_store):
an apply stuck behind a lock no longer stops the worker's other applies, its wake-ups and its
schedules. SQLite runs it in place (in-process work, one writer at a time)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import Engine, text

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from flows.apply import apply_patient
from flows.drain import drain_once
from flows.runtime import Runtime, WriteTarget
from store.db import make_engine
from tests.flows.test_drain_concurrency import (
    AFTER_SURGERY,
    booked_and_operated,
    enrolled_with_observations,
    status_by_patient,
)
from tests.utils.databases import postgres_schema
from tests.utils.pathways import LONDON, lumbar

RELEASE_AFTER_SECONDS = 45.0  # the lock's safety release: long past any wait this test makes


def waiting_for_lock(engine: Engine, table: str = "planned_action") -> bool:
    """Whether a backend of this database is waiting for a lock on `table`."""
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE :table"), {"table": f"%{table}%"}).scalar_one())


async def seen_waiting(engine: Engine, table: str) -> bool:
    for _ in range(300):  # the loop runs while the store work waits for the lock
        if await asyncio.to_thread(waiting_for_lock, engine, table):
            return True
        await asyncio.sleep(0.05)
    return False


class Blocker:
    """Another connection, which holds a table locked until `release()` (or its safety release)."""

    def __init__(self, engine: Engine) -> None:
        self.connection = engine.connect()
        self.safety: threading.Timer | None = None

    def lock(self, table: str) -> None:
        transaction = self.connection.begin()
        self.connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        self.safety = threading.Timer(RELEASE_AFTER_SECONDS, transaction.rollback)
        self.safety.start()

    def release(self) -> bool:
        """Whether the test released it, before the safety release did."""
        assert self.safety is not None
        by_test = self.safety.is_alive()
        self.safety.cancel()
        if by_test:
            self.connection.rollback()
        return by_test


@asynccontextmanager
async def runtime_and_blocker(fhir_sandbox: FhirSandbox) -> AsyncIterator[tuple[Runtime, Blocker]]:
    """A runtime on a PostgreSQL schema of its own, against the sandbox EHR, and a blocker."""
    with postgres_schema() as url:
        engine = make_engine(url)
        blocker = Blocker(engine)
        try:
            async with FhirClient(fhir_sandbox.base_url) as ehr:
                rt = Runtime(pathways={"lumbar_fusion": lumbar()}, ehr=ehr, tasks=ehr, target=WriteTarget.EHR,
                             db=engine, tz=LONDON, clock=lambda: AFTER_SURGERY)
                yield rt, blocker
        finally:
            blocker.connection.close()
            engine.dispose()


async def test_an_apply_waiting_for_the_database_leaves_the_event_loop_free(
        fhir_sandbox: FhirSandbox, new_patient_id: str) -> None:
    async with runtime_and_blocker(fhir_sandbox) as (rt, blocker):
        await booked_and_operated(rt, [new_patient_id])
        blocker.lock("planned_action")
        # If the apply blocked the loop, nothing below would run until the safety release.
        apply = asyncio.create_task(apply_patient(rt, new_patient_id))
        seen = await seen_waiting(rt.db, "planned_action")
        released_by_test = blocker.release()
        result = await apply
    assert seen and released_by_test  # seen from the loop while the apply still waited
    assert not apply.cancelled() and result.written > 0  # and then it finished its work


async def test_a_drain_stopped_while_its_claim_waits_gives_the_claim_back(
        fhir_sandbox: FhirSandbox, new_patient_id: str) -> None:
    """A worker stopped (SIGTERM) while its claim waits for PostgreSQL: the claim still commits
    on its thread, and its events go back to pending at once, not held until the lease ends."""
    patients = [f"{new_patient_id}-{i}" for i in range(3)]
    async with runtime_and_blocker(fhir_sandbox) as (rt, blocker):
        enrolled_with_observations(rt, patients)
        blocker.lock("inbox_event")
        batch = asyncio.create_task(drain_once(rt, worker="stopping"))
        seen = await seen_waiting(rt.db, "inbox_event")
        batch.cancel()
        await asyncio.sleep(0.2)  # the stop reaches the drain while its claim still waits
        released_by_test = blocker.release()
        with pytest.raises(asyncio.CancelledError):
            await batch
        rt.close_store_threads()  # every claim made on a thread has committed
        after_stop = status_by_patient(rt)
    assert seen and released_by_test
    assert after_stop == {f"Patient/{pid}": "pending" for pid in patients}
