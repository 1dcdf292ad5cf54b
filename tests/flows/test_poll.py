"""Polling an EHR that refuses system-wide searches (the sandbox with --require-patient)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from fhir_adapters.errors import FhirFatalError
from fhir_adapters.sandbox import FhirSandbox
from flows.poll import PollMode, PollSettings, poll_once
from flows.runtime import Runtime
from store.db import make_engine, session_scope
from store.enrolments import enrol
from store.models import InboxEvent
from tests.utils.databases import postgres_schema, sqlite_database
from tests.utils.ehr import stay
from tests.utils.notifications import clear_intake_tables

ADMITTED = datetime(2026, 3, 10, 8, tzinfo=UTC)


@pytest.fixture(scope="session")
def strict_ehr() -> Iterator[FhirSandbox]:
    with FhirSandbox(require_patient=True) as sandbox:
        yield sandbox


def add_patient(ehr: FhirSandbox, *, enrolled: bool, rt: Runtime) -> str:
    pid = f"pt-{uuid.uuid4().hex[:12]}"
    httpx.put(f"{ehr.base_url}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).raise_for_status()
    httpx.post(f"{ehr.base_url}/Encounter", json=stay(pid, ADMITTED)).raise_for_status()
    if enrolled:
        with session_scope(rt.db) as session:
            enrol(session=session, patient_ref=f"Patient/{pid}", pathway_id="lumbar_fusion",
                  pathway_version=1, parameters={}, enrolled_by="test", at=ADMITTED)
    return pid


def stored_refs(rt: Runtime, patients: set[str]) -> list[tuple[str | None, str | None]]:
    refs = {f"Patient/{p}" for p in patients}
    with session_scope(rt.db) as session:
        rows = session.exec(select(InboxEvent).where(col(InboxEvent.patient_ref).in_(refs))).all()
        return sorted((r.resource_type, r.patient_ref) for r in rows)


def record_batches(rt: Runtime) -> list[list[str]]:
    """The entry URLs of every batch the poller sends (the client itself does the sending)."""
    sent: list[list[str]] = []
    original = rt.ehr.batch

    async def batch(bundle: dict[str, Any]) -> dict[str, Any]:
        sent.append([e["request"]["url"] for e in bundle["entry"]])
        return await original(bundle)

    rt.ehr.batch = batch  # type: ignore[method-assign]
    return sent


async def test_poll_per_patient_finds_changes_of_enrolled_patients_only(make_runtime, strict_ehr) -> None:  # type: ignore[no-untyped-def]
    async with make_runtime(base_url=strict_ehr.base_url) as rt:
        clear_intake_tables(rt.db)
        a, b = (add_patient(strict_ehr, enrolled=True, rt=rt) for _ in range(2))
        stranger = add_patient(strict_ehr, enrolled=False, rt=rt)
        sent = record_batches(rt)
        options = PollSettings(patients_per_batch=1)
        await poll_once(rt, options=options)
        # Each enrolled patient: the Patient and its Encounter; nothing of the stranger.
        assert stored_refs(rt, {a, b, stranger}) == sorted(
            [("Encounter", f"Patient/{a}"), ("Encounter", f"Patient/{b}"),
             ("Patient", f"Patient/{a}"), ("Patient", f"Patient/{b}")])
        assert all(("patient=Patient" in url or "_id=" in url) for urls in sent for url in urls)
        # Nothing changed: the next round stores nothing; a new Encounter of `a` is found.
        assert await poll_once(rt, options=options) == 0
        assert all("_lastUpdated=gt" in url for url in sent[-1])
        httpx.post(f"{strict_ehr.base_url}/Encounter", json=stay(a, ADMITTED)).raise_for_status()
        assert await poll_once(rt, options=options) == 1
        clear_intake_tables(rt.db)


async def test_poll_system_wide_is_refused_by_such_an_ehr(make_runtime, strict_ehr) -> None:  # type: ignore[no-untyped-def]
    async with make_runtime(base_url=strict_ehr.base_url) as rt:
        clear_intake_tables(rt.db)
        with pytest.raises(FhirFatalError, match="403"):
            await poll_once(rt, options=PollSettings(mode=PollMode.SYSTEM))


@pytest.fixture
def own_store(db_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A new, migrated store of the same kind: only this test's patients are enrolled in it, so
    the round's length does not grow with what earlier tests enrolled in the shared one."""
    with (sqlite_database(tmp_path) if db_url.startswith("sqlite") else postgres_schema()) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


async def test_poll_per_patient_keeps_to_the_rate_limit(make_runtime, strict_ehr, own_store) -> None:  # type: ignore[no-untyped-def]
    async with make_runtime(base_url=strict_ehr.base_url, db=own_store) as rt:
        for _ in range(3):
            add_patient(strict_ehr, enrolled=True, rt=rt)
        sent = record_batches(rt)
        rate = 10.0  # searches per second: the first two batches must take about 2 s, unpaced 0.3 s
        started = time.monotonic()
        await poll_once(rt, options=PollSettings(patients_per_batch=1, searches_per_second=rate))
        elapsed = time.monotonic() - started
        searches = [len(urls) for urls in sent]
        assert len(searches) == 3  # one batch per enrolled patient
        # The last batch may start at once; every search before it had to wait its turn.
        assert elapsed >= (sum(searches) - searches[-1]) / rate


async def test_poll_bulk_exports_the_groups_changes_since_the_last_export(make_runtime, strict_ehr) -> None:  # type: ignore[no-untyped-def]
    async with make_runtime(base_url=strict_ehr.base_url) as rt:
        clear_intake_tables(rt.db)
        a, b = (add_patient(strict_ehr, enrolled=False, rt=rt) for _ in range(2))
        outsider = add_patient(strict_ehr, enrolled=False, rt=rt)
        group = httpx.post(f"{strict_ehr.base_url}/Group", json={
            "resourceType": "Group", "type": "person", "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in (a, b)]}).json()["id"]
        options = PollSettings(mode=PollMode.BULK, bulk_group_id=group)
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        assert await poll_once(rt, options=options, sleep=sleep) == 4  # Patient + Encounter, each member
        assert waits == [1.0]  # the status poll said 202, Retry-After: 1
        assert stored_refs(rt, {a, b, outsider}) == sorted(
            [("Encounter", f"Patient/{a}"), ("Encounter", f"Patient/{b}"),
             ("Patient", f"Patient/{a}"), ("Patient", f"Patient/{b}")])
        # The next export starts at the last one's transactionTime: only what changed since.
        assert await poll_once(rt, options=options, sleep=sleep) == 0
        httpx.post(f"{strict_ehr.base_url}/Encounter", json=stay(b, ADMITTED)).raise_for_status()
        assert await poll_once(rt, options=options, sleep=sleep) == 1
        clear_intake_tables(rt.db)


def test_poll_bulk_needs_a_group() -> None:
    with pytest.raises(ValueError, match="ERAS_POLL_BULK_GROUP_ID"):
        PollSettings(mode=PollMode.BULK)
