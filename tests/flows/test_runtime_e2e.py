"""End to end: notifications posted to the API, the drain runs, Tasks read back from the EHR.

On SQLite and PostgreSQL; the EHR is the sandbox FHIR server (behind a loopback proxy where
a test needs a network outage)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from flows.drain import drain_until_empty
from flows.loops import Loops
from flows.poll import catch_up_gaps
from flows.runtime import Runtime
from store.db import session_scope
from store.models import InboxEvent
from tests.flows.conftest import LONDON, lumbar
from tests.utils import ehr
from tests.utils.notifications import backport_bundle
from tests.utils.tcp_proxy import TcpProxy

SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
END = SURGERY + timedelta(hours=3)
AUTH = {"Authorization": "Bearer token-a"}


async def notify(api: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    response = await api.post("/fhir/notifications/sub-a", json=resource, headers=AUTH)
    assert response.status_code == 200, response.text


async def create_all(client: FhirClient, *resources: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for res in resources:
        if res["resourceType"] == "Patient":
            saved, _ = await client.update(res)
        else:
            saved = await client.create(res)
        out.append(saved)
    return out


def timeline(pid: str) -> list[dict[str, Any]]:
    return [ehr.patient(pid), ehr.booking(pid, SURGERY, SURGERY - timedelta(days=40)),
            ehr.smoking(pid, SURGERY - timedelta(days=39), current=True),
            ehr.stay(pid, SURGERY - timedelta(hours=3)), ehr.surgery(pid, SURGERY, END)]


async def task_keys(client: FhirClient, pid: str) -> Counter[str]:
    tasks = await client.search("Task", {"patient": f"Patient/{pid}"})
    return Counter(i["value"] for t in tasks for i in t.get("identifier", []))


def fixed_clock(rt: Runtime, at: datetime) -> Runtime:
    rt.clock = lambda: at
    return rt


async def test_surgery_end_notification_yields_pod0_mobilisation_task(api, make_runtime,
                                                                      new_patient_id) -> None:
    async with make_runtime() as rt:
        fixed_clock(rt, END + timedelta(minutes=20))
        saved = await create_all(rt.ehr, *timeline(new_patient_id))
        await notify(api, saved[-1])  # the Procedure with its end time
        results = await drain_until_empty(rt, worker="test")
        tasks = await rt.ehr.search("Task", {"patient": f"Patient/{new_patient_id}"})
    assert sum(len(r.applied) for r in results) == 1
    oob = [t for t in tasks if t["code"]["coding"][0]["code"] == "out_of_bed_day_of_surgery"]
    assert len(oob) == 1 and oob[0]["status"] == "ready"


async def test_hundred_notifications_with_duplicates_out_of_order_yield_exact_tasks(
        api, make_runtime) -> None:
    patients = [f"pt-{random.getrandbits(40):x}" for _ in range(16)]
    async with make_runtime() as rt:
        fixed_clock(rt, END + timedelta(minutes=20))
        saved = [r for pid in patients for r in await create_all(rt.ehr, *timeline(pid))]
        assert len(saved) == 80
        events = saved + random.Random(7).sample(saved, 20)  # 100 deliveries, 20 % duplicates
        random.Random(11).shuffle(events)
        for resource in events:
            await notify(api, resource)
        with session_scope(rt.db) as session:
            stored = len(list(session.exec(select(InboxEvent))))
        results = await drain_until_empty(rt, worker="test")
        per_patient = {pid: await task_keys(rt.ehr, pid) for pid in patients}
        expected = await _expected_task_keys(rt, patients[0])
    assert stored == 100 - 20  # each duplicate stored once
    assert sum(len(r.applied) for r in results) == len(patients)  # one apply per patient
    for pid, keys in per_patient.items():
        assert max(keys.values()) == 1, pid  # no Task twice
        assert {k.split(":", 1)[1] for k in keys} == expected


async def _expected_task_keys(rt: Runtime, pid: str) -> set[str]:
    """What one direct apply plans for the same timeline (element:occurrence of its tasks)."""
    from engine.evaluate import evaluate
    from flows.apply import _evaluate
    from store.enrolments import find_enrolments

    with session_scope(rt.db) as session:
        enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
    resources = await rt.ehr.search("Procedure", {"patient": f"Patient/{pid}"})
    assert resources  # the record is there
    evaluation, _, _ = _evaluate(rt, enrolment, await _record(rt, pid), rt.clock())
    assert evaluation == evaluate(lumbar(), _evaluate(rt, enrolment, await _record(rt, pid),
                                                      rt.clock())[1], now=rt.clock(), tz=LONDON)
    return {a.key.split(":", 1)[1] for a in evaluation.actions if a.kind == "task"}


async def _record(rt: Runtime, pid: str) -> list[dict[str, Any]]:
    out = []
    for rtype, param in (("Patient", "_id"), ("ServiceRequest", "patient"), ("Observation", "patient"),
                         ("Encounter", "patient"), ("Procedure", "patient")):
        out += await rt.ehr.search(rtype, {param: pid if rtype == "Patient" else f"Patient/{pid}"})
    return out


async def test_ehr_outage_mid_run_loses_nothing_and_applies_nothing_twice(
        api, make_runtime, fhir_sandbox) -> None:
    base = httpx.URL(fhir_sandbox.base_url)
    proxy = TcpProxy(base.host, base.port)
    await proxy.up()
    proxied = f"http://127.0.0.1:{proxy.port}{base.path}"
    patients = [f"pt-{random.getrandbits(40):x}" for _ in range(6)]
    async with make_runtime() as seeder:
        saved = {pid: await create_all(seeder.ehr, *timeline(pid)) for pid in patients}
    async with make_runtime(base_url=proxied, max_retries=1, backoff_base=0.05,
                            backoff_max=0.2) as rt:
        fixed_clock(rt, END + timedelta(minutes=20))
        loops = Loops(rt, worker="test", drain_interval=0.2)
        loops.start()
        for pid in patients[:3]:
            await notify(api, saved[pid][-1])
        await _wait_until_drained(rt, 20)
        await proxy.down()  # the EHR is unreachable until each new event was tried and refused
        for pid in patients[3:]:
            await notify(api, saved[pid][-1])
        waiting = await _wait_until_refused(rt, times=3, seconds=60)
        await proxy.up()
        await _wait_until_drained(rt, 60)
        await loops.stop()
        keys = {pid: await task_keys(rt.ehr, pid) for pid in patients}
        await proxy.down()
    assert len(waiting) == 3  # nothing lost while the EHR was down
    for pid in patients:
        assert keys[pid] and max(keys[pid].values()) == 1, pid


async def _wait_until_refused(rt: Runtime, times: int, seconds: float) -> list[InboxEvent]:
    """The events not done, once each was claimed `times` times and given back with an error
    (the drain's short backoff makes that a few seconds, not the outage's length)."""
    for _ in range(int(seconds * 10)):
        with session_scope(rt.db) as session:
            waiting = [e for e in session.exec(select(InboxEvent)) if e.status != "done"]
        if waiting and all(e.attempts >= times and e.status == "pending" and e.last_error
                           for e in waiting):
            return waiting
        await asyncio.sleep(0.1)
    raise AssertionError(f"events not refused {times} times within {seconds} s: "
                         f"{[(e.status, e.attempts) for e in waiting]}")


async def _wait_until_drained(rt: Runtime, seconds: float) -> None:
    for _ in range(int(seconds * 10)):
        with session_scope(rt.db) as session:
            statuses = {e.status for e in session.exec(select(InboxEvent))}
        if statuses <= {"done"}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"inbox not drained within {seconds} s: {statuses}")


@pytest.fixture(scope="module")
def quiet_ehr() -> Iterator[FhirSandbox]:
    """An EHR of this module's own: a catch-up asks for everything changed in the hour before the
    gap, which on the session's sandbox is every resource earlier tests wrote (thousands in the
    full suite), each then stored and drained."""
    with FhirSandbox() as sandbox:
        yield sandbox


async def test_backport_gap_triggers_catch_up_query(api, make_runtime, new_patient_id, quiet_ehr) -> None:
    async with make_runtime(base_url=quiet_ehr.base_url) as rt:
        fixed_clock(rt, END + timedelta(minutes=20))
        saved = await create_all(rt.ehr, *timeline(new_patient_id))
        first = backport_bundle("sub-a", events=[(1, saved[1])])
        third = backport_bundle("sub-a", events=[(3, saved[2])])  # event 2 (the surgery) lost
        for bundle in (first, third):
            response = await api.post("/fhir/notifications/sub-a", json=bundle, headers=AUTH)
            assert response.status_code == 200, response.text
        caught = await catch_up_gaps(rt)
        await drain_until_empty(rt, worker="test")
        keys = await task_keys(rt.ehr, new_patient_id)
    assert caught >= 1  # the query found what the missing notification would have carried
    assert any(":out_of_bed_day_of_surgery:" in k for k in keys)


async def test_engine_killed_mid_batch_and_restarted_loses_nothing(api, make_runtime, fhir_sandbox,
                                                                   db_url) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    patients = [f"pt-{random.getrandbits(40):x}" for _ in range(12)]
    async with make_runtime() as rt:
        for pid in patients:
            saved = await create_all(rt.ehr, *timeline(pid))
            await notify(api, saved[-1])
        env = {**os.environ, "ERAS_DATABASE_URL": db_url, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
               "ERAS_WRITE_TARGET": "ehr"}
        cmd = [sys.executable, "-m", "eras_cli.main", "drain", "--loop", "--lease-seconds", "2",
               "--batch-size", "200"]
        worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        statuses: Counter[str] = Counter()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with session_scope(rt.db) as session:
                statuses = Counter(e.status for e in session.exec(select(InboxEvent)))
            if statuses["done"] >= 1 and statuses["processing"] >= 1:
                break
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGKILL)  # dies mid-batch, holding claimed events
        worker.wait()
        killed_with = dict(statuses)
        await asyncio.sleep(2.5)  # the dead worker's lease runs out
        cmd = [sys.executable, "-m", "eras_cli.main", "drain", "--lease-seconds", "2"]
        restarted = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert restarted.returncode == 0, restarted.stderr
        with session_scope(rt.db) as session:
            final = Counter(e.status for e in session.exec(select(InboxEvent)))
        keys = {pid: await task_keys(rt.ehr, pid) for pid in patients}
    assert killed_with["processing"] >= 1, killed_with  # it really died mid-batch
    assert final == Counter({"done": len(patients)})
    for pid in patients:
        assert keys[pid] and max(keys[pid].values()) == 1, pid
