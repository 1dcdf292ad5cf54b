"""Correct across processes: one apply per patient at a time, reminders once per level, and a
failing patient never stalls the tick. Real OS processes (tests/flows/processes.py), the
sandbox EHR, the real databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlmodel import col, select

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from flows.apply import apply_patient
from flows.drain import drain_once
from flows.failures import PARK_AFTER
from flows.runtime import Runtime, WriteTarget
from flows.tick import LEASE, tick_once
from store.actions import list_actions
from store.db import make_engine, session_scope
from store.enrolments import enrol, find_enrolments
from store.inbox import store_event
from store.models import Enrolment, InboxEvent, ReminderSent
from store.scheduling import list_parked_patients
from tests.api.conftest import api_app
from tests.flows import processes
from tests.flows.conftest import LONDON, lumbar
from tests.flows.test_apply import BOOKED_AT, NOW, SURGERY, booked_patient, seed, tasks_of
from tests.utils import ehr
from tests.utils.loopback import serve
from tests.utils.notifications import clear_intake_tables, new_event

ROOT = Path(__file__).resolve().parents[2]
END = SURGERY + timedelta(hours=3)


class Child:
    """One OS process running tests/flows/processes.py's `main`, forked from the module's forkserver
    (see `_forked_from_a_warm_server`); polled and read like the `subprocess.Popen` it replaces."""

    def __init__(self, args: dict[str, Any]) -> None:
        assert _FORKSERVER, "spawned outside the module's forkserver fixture"
        context = _FORKSERVER[0]
        self._result, sent = context.Pipe(duplex=False)
        self.process = context.Process(target=processes.child, args=(args, dict(os.environ), str(ROOT), sent))
        self.process.start()
        sent.close()  # the child holds the only sending end: its exit ends the pipe

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def communicate(self, timeout: float) -> tuple[dict[str, Any] | None, str]:
        """Its result (None if it sent none) and its error text, once it has exited."""
        sent: tuple[str, Any] | None = None
        if self._result.poll(timeout):
            with contextlib.suppress(EOFError):
                sent = self._result.recv()
        self.process.join(timeout)
        assert self.process.exitcode is not None, f"still running after {timeout} s"
        if sent is None:
            return None, f"exited {self.process.exitcode} without a result"
        return (sent[1], "") if sent[0] == "ok" else (None, sent[1])


_FORKSERVER: list[multiprocessing.context.ForkServerContext] = []


@pytest.fixture(scope="module", autouse=True)
def _forked_from_a_warm_server() -> Iterator[None]:
    """Each process of these tests used to be a new interpreter (`python -m tests.flows.processes`)
    importing the engine, the store and the FHIR client: 1.5-3 s of CPU each, 14 of them in this
    module, 4 one after the other in the crash test. Here they are forked from a forkserver that
    imported tests.flows.processes once: like the interpreters they inherit nothing of this process
    (no database connection, no event loop, no client), get the test's environment, and open their
    own engine and FHIR client. `python -m tests.flows.processes` stays the module's entry point."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.flows.processes"])
    _FORKSERVER.append(context)
    try:
        yield
    finally:
        _FORKSERVER.clear()
        stop = getattr(multiprocessing.forkserver._forkserver, "_stop", None)
        if stop is not None:  # the server would otherwise wait, idle, for this process to exit
            stop()


def spawn(**args: Any) -> Child:
    return Child(args)


def start_together(tmp_path: Path, *arg_sets: dict[str, Any]) -> list[Child]:
    """Start one process per argument set; let them go at once, when all are ready (imports
    take seconds on a loaded machine), each after its own `offset`."""
    go = tmp_path / f"go-{time.monotonic_ns()}"
    processes = []
    for i, args in enumerate(arg_sets):
        processes.append(spawn(**args, ready=f"{go}.ready{i}", go=str(go)))
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.ready{i}").exists() for i in range(len(arg_sets))):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
            [p.communicate(5)[1][-2000:] for p in processes if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    return processes


def result_of(process: Child) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and out is not None, err[-3000:]
    return dict(out)


async def test_two_processes_applying_one_patient_serialise(postgresql_url: str,
                                                            fhir_sandbox: FhirSandbox,
                                                            new_patient_id: str,
                                                            tmp_path: Path) -> None:
    """Each process adds its own new fact, then applies. Process A holds its read for 1.5 s;
    B starts 0.3 s later. Unserialised, B would read both facts and write both Tasks, then A
    would write its older view (one fact) last and cancel B's Task: a lost update. Serialised,
    B reads after A's apply and the record ends with both."""
    pid = new_patient_id
    db = make_engine(postgresql_url)
    async with FhirClient(fhir_sandbox.base_url) as client:
        rt = Runtime(pathways={"lumbar_fusion": lumbar()}, ehr=client, tasks=client,
                     target=WriteTarget.EHR, db=db, tz=LONDON)
        await booked_patient(rt, pid, smoker=False, hb=13.5)  # neither task to begin with
        await apply_patient(rt, pid, now=NOW)
        before = await tasks_of(client, pid)
        later = BOOKED_AT + timedelta(days=5)
        common = {"db_url": postgresql_url, "fhir_url": fhir_sandbox.base_url, "job": "apply",
                  "patient_id": pid, "now": NOW.isoformat()}
        ran = [result_of(p) for p in start_together(
            tmp_path,
            {**common, "offset": 0.0, "read_delay": 1.5, "fact": ehr.smoking(pid, later, current=True)},
            {**common, "offset": 0.3, "read_delay": 0.0, "fact": ehr.haemoglobin(pid, later, 11.0)})]
        tasks = await tasks_of(client, pid)
        with session_scope(db) as session:
            enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
            actions = {r.element_id: r.status for r in list_actions(session=session,
                                                                      enrolment_id=enrolment.id)}
    db.dispose()
    assert "smoking_cessation" not in before and "anaemia_iron_therapy" not in before
    # Inside the lock (flows.apply._apply, retries included), the two processes never overlap.
    spans = sorted(span for r in ran for span in r["spans"])
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False)), spans
    assert ran[1]["spans"][0][0] >= ran[0]["spans"][0][1]  # B, 0.3 s later, waited for A
    for element in ("smoking_cessation", "anaemia_iron_therapy"):  # both facts are in the record
        assert tasks[element]["status"] not in ("cancelled", "completed"), element
        assert actions[element] not in ("cancelled",), element


@pytest.fixture
def pager() -> Any:
    received: list[tuple[str, dict[str, Any]]] = []
    app = FastAPI()

    @app.post("/page")
    async def page(request: Request) -> dict[str, str]:
        received.append((request.headers.get("Idempotency-Key", ""), json.loads(await request.body())))
        return {"ok": "yes"}

    with serve(app) as url:
        yield url, received


def routes_file(tmp_path: Path, pager_url: str) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(f"""
routes:
  - role: charge_nurse
    ward: "*"
    channels:
      - {{type: webhook, url: "{pager_url}/page", secret_env: ERAS_TEST_PAGER_SECRET}}
""")
    return str(path)


async def overdue_patient(rt: Runtime, pid: str, late: datetime) -> set[str]:
    """A patient whose out-of-bed task (due 6 h after surgery) is escalated at `late` (10 h 30)."""
    await booked_patient(rt, pid, smoker=False)
    await seed(rt.ehr, ehr.stay(pid, SURGERY - timedelta(hours=3)), ehr.surgery(pid, SURGERY, END))
    await apply_patient(rt, pid, now=late)
    with session_scope(rt.db) as session:
        enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
        return {a.key for a in list_actions(session=session, enrolment_id=enrolment.id)}


def pages_for(received: list[tuple[str, dict[str, Any]]], keys: set[str]) -> list[tuple[str, int]]:
    return [(key, body["level"]) for key, body in received if body["action_key"] in keys]


async def test_two_reminder_processes_page_each_level_once(make_runtime, new_patient_id, pager,
                                                           db_url, fhir_sandbox, tmp_path,
                                                           monkeypatch) -> None:
    monkeypatch.setenv("ERAS_TEST_PAGER_SECRET", "pager-secret")
    pager_url, received = pager
    late = END + timedelta(hours=10, minutes=30)
    async with make_runtime() as rt:
        keys = await overdue_patient(rt, new_patient_id, late)
    common = {"db_url": db_url, "fhir_url": fhir_sandbox.base_url, "job": "remind",
              "now": late.isoformat(), "routes": routes_file(tmp_path, pager_url)}
    runs = [result_of(p) for p in start_together(tmp_path, {**common, "worker": "w1"},
                                                 {**common, "worker": "w2"})]
    pages = pages_for(received, keys)
    assert pages, "the escalation was paged"
    assert len(pages) == len(set(pages))  # each level once, though two processes ran at once
    sent = [set(r["sent"]) for r in runs]
    assert not sent[0] & sent[1]  # no level was sent by both
    assert {key for key, _ in pages} <= sent[0] | sent[1]


async def test_crash_between_send_and_record_repeats_once_with_the_same_key(
        make_runtime, new_patient_id, pager, db_url, fhir_sandbox, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ERAS_TEST_PAGER_SECRET", "pager-secret")
    pager_url, received = pager
    late = END + timedelta(hours=10, minutes=30)
    async with make_runtime() as rt:
        keys = await overdue_patient(rt, new_patient_id, late)
    common = {"db_url": db_url, "fhir_url": fhir_sandbox.base_url, "job": "remind",
              "routes": routes_file(tmp_path, pager_url), "worker": "w1"}
    crashed = spawn(**common, now=late.isoformat(), crash_after_send=True)
    crashed.communicate(timeout=120)
    assert crashed.returncode == 3  # died after delivering, before recording
    first = pages_for(received, keys)
    # Within the claim's lease (5 min) nobody sends again; after it, one run does, once.
    soon = result_of(spawn(**common, now=(late + timedelta(minutes=1)).isoformat()))
    after = result_of(spawn(**{**common, "worker": "w2"},
                            now=(late + timedelta(minutes=6)).isoformat()))
    again = result_of(spawn(**common, now=(late + timedelta(minutes=12)).isoformat()))
    pages = pages_for(received, keys)
    assert first and pages == first + first  # exactly one repeat of each, the same keys
    assert {k for k, _ in first} <= set(after["sent"])
    assert not {k for k, _ in first} & (set(soon["sent"]) | set(again["sent"]))
    async with make_runtime() as rt:
        with session_scope(rt.db) as session:
            rows = session.exec(select(ReminderSent).where(col(ReminderSent.action_key).in_(keys))).all()
    assert rows and all(r.sent_at is not None and r.claimed_by == "w2" for r in rows
                        if r.kind == "escalation")


async def test_tick_survives_a_failing_patient_and_parks_it(make_runtime, db_url, fhir_sandbox,
                                                            new_patient_id, tmp_path) -> None:
    """The failing patient is enrolled on a pathway no longer configured (a KeyError in the
    apply, not a FHIR error) and sorts first; the two after it are applied all the same."""
    bad, good = new_patient_id, [f"{new_patient_id}-g{i}" for i in range(2)]
    early = datetime(2000, 1, 1, tzinfo=UTC)  # before every other test's next check: ours first
    async with make_runtime() as rt:
        await seed(rt.ehr, ehr.patient(bad))
        for pid in good:
            await booked_patient(rt, pid, smoker=False)
            await apply_patient(rt, pid, now=NOW)
        with session_scope(rt.db) as session:
            enrol(session=session, patient_ref=f"Patient/{bad}", pathway_id="retired_pathway",
                  pathway_version=1, parameters={}, enrolled_by="test", at=NOW)
            for i, pid in enumerate([bad, *good]):
                for row in find_enrolments(session=session, patient_ref=f"Patient/{pid}"):
                    row.next_check_at = early + timedelta(hours=i)
                    session.add(row)
        ticks = [await tick_once(rt, now=NOW, limit=3)]
        for n in range(1, PARK_AFTER):  # its next check is due again (the claim's lease passed)
            _due_again(rt, bad, early)
            ticks.append(await tick_once(rt, now=NOW + n * 2 * LEASE, limit=1))
        with session_scope(rt.db) as session:
            row = session.exec(select(Enrolment).where(
                Enrolment.patient_ref == f"Patient/{bad}")).one()
        status = await runtime_status(db_url, fhir_sandbox)
        cli = await parked_cli(db_url, fhir_sandbox)
    assert set(good) <= set(ticks[0]) and bad not in ticks[0]  # the patients after it ran
    assert not any(ticks[1:])  # the failing one, each time
    assert row.parked_at is not None and row.failure_count == PARK_AFTER
    assert "KeyError" in (row.parked_error or "") and "retired_pathway" in (row.parked_error or "")
    parked = [p for p in status["parked"] if p["patient"] == f"Patient/{bad}"]
    assert parked and "retired_pathway" in parked[0]["error"] and parked[0]["failures"] == PARK_AFTER
    line = next(line for line in cli.splitlines() if f"Patient/{bad}" in line)
    assert "KeyError" in line and f"after {PARK_AFTER} failures" in line


def _due_again(rt: Runtime, pid: str, at: datetime) -> None:
    with session_scope(rt.db) as session:
        for row in find_enrolments(session=session, patient_ref=f"Patient/{pid}"):
            row.next_check_at = at
            session.add(row)


async def runtime_status(db_url: str, fhir_sandbox: FhirSandbox) -> dict[str, Any]:
    app = api_app(db_url, fhir={"base_url": fhir_sandbox.base_url})
    async with app.router.lifespan_context(app):
        admin = app.state.worklist.dev_issuer.issue("admin.a", ("admin",), ())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
            response = await http.get("/runtime/status", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def parked_cli(db_url: str, fhir_sandbox: FhirSandbox) -> str:
    """`eras parked`'s output, run by typer's test runner (on a thread: the command runs its own
    event loop), not in a child process that would spend seconds importing."""
    from typer.testing import CliRunner

    from eras_cli.main import app

    env = {"ERAS_DATABASE_URL": db_url, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
           "ERAS_WRITE_TARGET": "ehr", "COLUMNS": "400"}
    done = await asyncio.to_thread(CliRunner().invoke, app, ["parked"], env=env)
    assert done.exit_code == 0, done.output
    return done.output


async def test_drain_parks_a_patient_the_store_has_no_enrolment_for(make_runtime, db_url,
                                                                    fhir_sandbox, new_patient_id) -> None:
    """Bookings (which could enrol) about a patient the EHR does not know: each apply fails; the
    third parks the patient, with its error, though no enrolment exists to hold it."""
    ref = f"Patient/{new_patient_id}"
    async with make_runtime() as rt:
        clear_intake_tables(rt.db)
        results = []
        for _ in range(PARK_AFTER + 1):
            with session_scope(rt.db) as session:
                store_event(session=session, event=new_event(patient_ref=ref, resource_type="ServiceRequest"),
                            at=NOW)
            results.append(await drain_once(rt, worker="test"))
        with session_scope(rt.db) as session:
            parked = [p for p in list_parked_patients(session=session) if p.patient_ref == ref]
            # In id order: PostgreSQL hands updated rows back in no particular order.
            events = session.exec(select(InboxEvent).order_by(col(InboxEvent.id))).all()
        status = await runtime_status(db_url, fhir_sandbox)
        cli = await parked_cli(db_url, fhir_sandbox)
        clear_intake_tables(rt.db)
    assert [r.failed for r in results] == [[new_patient_id]] * (PARK_AFTER + 1)
    assert parked and parked[0].pathway_id is None and parked[0].failure_count == PARK_AFTER
    assert all(e.status == "failed" and e.last_error for e in events)
    assert "parked" in (events[-1].last_error or "")  # the fourth is refused untried
    shown = [p for p in status["parked"] if p["patient"] == ref]
    assert shown and shown[0]["error"] == parked[0].error and shown[0]["pathway"] is None
    assert any(ref in line and "(no enrolment)" in line for line in cli.splitlines())
