"""The distributed run the issue describes, end to end, with what it observed for the tests.

Processes: the sandbox EHR, a Prefect server on PostgreSQL, two API replicas and three
`eras worker`s on one PostgreSQL store, a pager webhook. 300 notifications for 60 patients
(240 resources, 60 of them delivered twice), shuffled over both APIs in waves that each name
every patient; once a quarter is done, the first worker seen holding a claimed batch is
SIGKILLed, the next one SIGTERMed. Simulated time (ERAS_CLOCK_FILE)
then passes the drain's 5-minute lease, so the survivor reclaims the dead worker's batch, and
later reaches the escalation of the POD0 mobilisation, when three reminder passes run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from store.db import make_engine, session_scope
from store.migrate import upgrade
from store.wakeup import notify_stored
from tests.multiprocess.processes import ROOT, Fleet, Proc, postgres_database
from tests.multiprocess.receivers import ClockFile, Page, WebhookReceiver
from tests.utils import ehr
from tests.utils.databases import postgres_schema, postgres_server_url

PATIENTS = 60
SECRET = "mp-secret"
SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
END = SURGERY + timedelta(hours=3)
T0 = END + timedelta(minutes=20)  # POD0, the mobilisation Task is open
LEASE = timedelta(minutes=5)  # the drain's lease (flows/drain.py default): passed at T0 + 6 min
# Out of bed on the day of surgery: due 6 h after the end, escalated 4 h later
# (pathways/library/recovery.yaml): at END + 10 h 30 min escalation level 1 has come.
REMIND_AT = END + timedelta(hours=10, minutes=30)
ROLES = ("anaesthetist", "case_manager", "charge_nurse", "dietitian", "nurse", "nurse_educator",
         "physician", "physiotherapist", "psychologist", "surgeon")  # every staff role in the pathway


@dataclass
class Observed:
    """What the run saw; each test asserts one property of it."""

    patients: list[str]
    expected_keys: set[str]  # element:occurrence of the reference patient's Tasks (one process)
    task_keys: dict[str, Counter[str]]  # patient -> identifier value -> Tasks carrying it
    unique_resources: int
    inbox: list[dict[str, Any]]
    killed: dict[str, Any]  # worker name, signal, events it held when signalled
    pages: list[Page]
    reminders_sent: list[tuple[str, str, int, str]]  # (action_key, kind, level, role) in the store
    deployments: list[dict[str, Any]]
    failed_drains: dict[str, int]  # worker -> 'drain failed' lines in its log
    lease_jumps: int  # times simulated time passed a lease before the inbox was done (1 = only the kill's)
    timings: dict[str, float] = field(default_factory=dict)


def timeline(pid: str) -> list[dict[str, Any]]:
    return [ehr.patient(pid), ehr.booking(pid, SURGERY, SURGERY - timedelta(days=40)),
            ehr.stay(pid, SURGERY - timedelta(hours=3)), ehr.surgery(pid, SURGERY, END)]


async def seed(client: FhirClient, pids: list[str]) -> list[dict[str, Any]]:
    saved = []
    for pid in pids:
        for res in timeline(pid):
            saved.append((await client.update(res))[0] if res["resourceType"] == "Patient"
                         else await client.create(res))
    return saved


async def task_keys(client: FhirClient, pid: str) -> Counter[str]:
    tasks = await client.search("Task", {"patient": f"Patient/{pid}", "_count": "1000"})
    return Counter(i["value"] for t in tasks for i in t.get("identifier", []))


def routes_file(directory: Path, url: str) -> Path:
    path = directory / "routes.yaml"
    lines = ["routes:"] + [f'  - {{role: {role}, ward: "*", channels: [{{type: webhook, url: "{url}", '
                           f'secret_env: ERAS_MP_PAGER_SECRET}}]}}' for role in ROLES]
    path.write_text("\n".join(lines) + "\n")
    return path


async def reference_keys(client: FhirClient, directory: Path, env: dict[str, str], clock: ClockFile,
                         pid: str, at: list[datetime]) -> set[str]:
    """The Tasks one process (its own SQLite store) writes for the same timeline, applied at the
    same instants as the distributed patients: the oracle for 'exactly'. The process
    (tests.multiprocess.apply_at) applies once per instant, the clock moved between its rounds."""
    database = f"sqlite:///{directory}/reference.db"
    await asyncio.to_thread(upgrade, database)
    barrier = directory / "reference-rounds"
    barrier.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.multiprocess.apply_at", pid, str(barrier), "reference", str(len(at)),
        env={**env, "ERAS_DATABASE_URL": database}, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    for number, instant in enumerate(at):
        while not (barrier / f"ready-{number}-reference").exists() and proc.returncode is None:
            await asyncio.sleep(0.02)
        clock.set(instant)
        (barrier / f"go-{number}").touch()
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")
    return {key.split(":", 1)[1] for key in await task_keys(client, pid)}


def inbox_rows(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT id, dedup_key, status, claimed_by, attempts, processed_at, "
                                 "last_error FROM inbox_event ORDER BY id"))
        return [dict(r._mapping) for r in rows]


def held_batches(db: Engine) -> dict[str, list[int]]:
    """claimed_by -> ids of the events it holds in 'processing'."""
    with db.connect() as conn:
        rows = conn.execute(text("SELECT claimed_by, id FROM inbox_event WHERE status = 'processing'"))
        out: dict[str, list[int]] = {}
        for claimed_by, event_id in rows:
            out.setdefault(str(claimed_by), []).append(int(event_id))
        return out


def wake_drains(db: Engine) -> None:
    """The NOTIFY the intake sends: after a jump of simulated time the workers' drains look at
    once, as they would at their safety net (30 s while they listen), which a jump does not bring."""
    with session_scope(db) as session:
        notify_stored(session)


def done_count(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM inbox_event WHERE status = 'done'")).scalar_one())


class Saboteur(threading.Thread):
    """Watches the store; once the workers have done `after_done` events side by side, SIGKILLs
    the first worker seen holding a batch and SIGTERMs the next."""

    def __init__(self, db: Engine, workers: dict[str, Proc], timeout: float, after_done: int) -> None:
        super().__init__(daemon=True)
        self.db, self.workers, self.timeout, self.after_done = db, workers, timeout, after_done
        self.done: dict[str, Any] = {}

    def _owner(self, claimed_by: str) -> str | None:
        pid = claimed_by.rsplit(":", 1)[-1]
        return next((n for n, p in self.workers.items() if str(p.pid) == pid), None)

    def run(self) -> None:
        plan = [signal.SIGKILL, signal.SIGTERM]
        deadline = time.monotonic() + self.timeout
        while done_count(self.db) < self.after_done and time.monotonic() < deadline:
            time.sleep(0.1)
        while plan and time.monotonic() < deadline:
            for claimed_by, ids in held_batches(self.db).items():
                name = self._owner(claimed_by)
                if name and plan and name not in self.done and self.workers[name].alive:
                    self.done[name] = self._signal(name, plan.pop(0), claimed_by, ids)
            time.sleep(0.03)
        for sig in plan:  # no batch was caught in flight: signal an idle worker (reported)
            name = next(n for n, p in self.workers.items() if n not in self.done and p.alive)
            self.workers[name].signal(sig)
            self.done[name] = {"signal": sig.name, "held": [], "mid_batch": False,
                               "pid": self.workers[name].pid}

    def _signal(self, name: str, sig: signal.Signals, claimed_by: str, ids: list[int]) -> dict[str, Any]:
        proc = self.workers[name]
        proc.signal(sig)
        assert proc.popen is not None
        if sig is signal.SIGKILL:  # what it still held when it died (it may have settled some)
            proc.popen.wait(timeout=10)
            ids = held_batches(self.db).get(claimed_by, [])
            return {"signal": sig.name, "held": ids, "mid_batch": bool(ids), "pid": proc.pid}
        # SIGTERM: every event it held until it ended (it may claim one more batch before its
        # drain stops); a stopped drain gives back what it had not settled, so it ends holding none.
        seen, deadline = set(ids), time.monotonic() + 60
        while proc.popen.poll() is None and time.monotonic() < deadline:
            seen.update(held_batches(self.db).get(claimed_by, []))
            time.sleep(0.02)
        left = held_batches(self.db).get(claimed_by, [])
        return {"signal": sig.name, "held": sorted(seen | set(left)), "held_after_stop": left,
                "mid_batch": bool(seen), "pid": proc.pid}


def waves(resources: list[dict[str, Any]], rng: random.Random) -> list[list[dict[str, Any]]]:
    """300 deliveries (each resource once, a fifth of them twice) in waves: every wave holds one
    delivery of every patient, so concurrent batches of different workers share patients."""
    deliveries = resources + rng.sample(resources, len(resources) // 4)  # 240 + 60, 20 % twice
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for res in deliveries:
        pid = res["id"] if res["resourceType"] == "Patient" else res["subject"]["reference"][8:]
        by_patient.setdefault(pid, []).append(res)
    out: list[list[dict[str, Any]]] = []
    for items in by_patient.values():
        rng.shuffle(items)
        for k, res in enumerate(items):
            if k == len(out):
                out.append([])
            out[k].append(res)
    for wave in out:
        rng.shuffle(wave)
    return out


async def notify_all(apis: list[str], waves_: list[list[dict[str, Any]]]) -> None:
    """Each delivery as a notification to one of the APIs (random), wave after wave; every
    answer must be 200 (stored before it is acknowledged)."""
    rng = random.Random(20261206)
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with httpx.AsyncClient(timeout=30) as http:
        async def one(res: dict[str, Any]) -> None:
            api = rng.choice(apis)
            response = await http.post(f"{api}/fhir/notifications/mp", json=res, headers=headers)
            assert response.status_code == 200, (api, response.status_code, response.text[:200])
        for wave in waves_:
            await asyncio.gather(*(one(r) for r in wave))
            await asyncio.sleep(0.7)


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        await asyncio.sleep(0.25)


def reminders_sent(db: Engine) -> list[tuple[str, str, int, str]]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT action_key, kind, level, role FROM reminder_sent"))
        return [(str(a), str(k), int(lv), str(r)) for a, k, lv, r in rows]


def deployments(api: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
    response.raise_for_status()
    return list(response.json())


def engine_env(*, store: str, sandbox: FhirSandbox, clock: ClockFile, routes: Path,
               prefect_api: str, directory: Path) -> dict[str, str]:
    """What every engine process (API, worker, reminder pass) is configured with."""
    return {**os.environ, "ERAS_DATABASE_URL": store, "ERAS_FHIR_BASE_URL": sandbox.base_url,
            "ERAS_SUBSCRIPTIONS": json.dumps({"mp": SECRET}), "ERAS_CLOCK_FILE": str(clock.path),
            "ERAS_DELIVERY_ROUTES_FILE": str(routes), "ERAS_MP_PAGER_SECRET": "pager-secret",
            "ERAS_TIMEZONE": "Europe/London", "ERAS_WORKLIST_DEV_MODE": "true",
            "ERAS_LOG_LEVEL": "WARNING", "PREFECT_HOME": str(directory / "prefect-client"),
            "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            } | ({"PREFECT_API_URL": prefect_api} if prefect_api else {})


async def run(directory: Path) -> Observed:
    """The whole scenario; every process is stopped before it returns."""
    fleet = Fleet(directory)
    receiver = WebhookReceiver()
    with FhirSandbox() as sandbox, postgres_schema() as store, \
            postgres_database(postgres_server_url()) as prefect_db, receiver.running():
        try:
            # The Prefect server starts (tens of seconds here) while the EHR is seeded.
            prefect = asyncio.create_task(_timed(fleet.prefect_server, prefect_db, directory / "prefect"))
            clock = ClockFile(directory / "clock", T0)
            env = engine_env(store=store, sandbox=sandbox, clock=clock, prefect_api="",
                             routes=routes_file(directory, receiver.url), directory=directory)
            apis = [asyncio.create_task(_timed(fleet.api, f"api-{i}", dict(env))) for i in (1, 2)]
            async with FhirClient(sandbox.base_url) as client:
                prepared = await _prepare(client, fleet, env, clock)
                (_, prefect_api), prefect_s = await prefect
                env["PREFECT_API_URL"] = prefect_api
                urls = [(await api)[0][1] for api in apis]
                observed = await _scenario(fleet, env, client, clock, store, prefect_api, receiver,
                                           urls, prepared)
            observed.timings["prefect_server_start_s"] = prefect_s
            return observed
        finally:
            await asyncio.to_thread(fleet.stop_all)


async def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await asyncio.to_thread(fn, *args)
    return result, time.perf_counter() - started


@dataclass
class Prepared:
    pids: list[str]
    resources: list[dict[str, Any]]  # the 240 resources of the 60 patients, as stored
    expected_keys: set[str]


async def _prepare(client: FhirClient, fleet: Fleet, env: dict[str, str], clock: ClockFile) -> Prepared:
    pids = [f"mp{i:02d}-{random.getrandbits(24):06x}" for i in range(PATIENTS)]
    resources = await seed(client, [*pids, "mp-reference"])
    reference = await reference_keys(client, fleet.directory, env, clock, "mp-reference",
                                     [T0, T0 + LEASE + timedelta(minutes=1)])
    clock.set(T0)
    mine = [r for r in resources if r.get("id") != "mp-reference"
            and (r.get("subject") or {}).get("reference") != "Patient/mp-reference"]
    return Prepared(pids, mine, reference)


async def _pass_leases(db: Engine, clock: ClockFile, most: int = 3) -> int:
    """Pass the lease (simulated time) until the inbox is done: once for the signalled workers'
    batches, again for each batch that failed meanwhile. Returns how many times it took."""
    for jump in range(1, most + 1):
        clock.set(T0 + jump * (LEASE + timedelta(minutes=1)))
        wake_drains(db)
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: all(r["status"] == "done" for r in inbox_rows(db)), 60, "inbox drained")
            return jump
    return most + 1


async def _scenario(fleet: Fleet, env: dict[str, str], client: FhirClient, clock: ClockFile,
                    store: str, prefect_api: str, receiver: WebhookReceiver, apis: list[str],
                    prepared: Prepared) -> Observed:
    db = make_engine(store)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    workers = {f"worker-{i}": fleet.worker(f"worker-{i}", env) for i in (1, 2, 3)}
    with contextlib.suppress(TimeoutError):  # what they registered is asserted by a test
        await wait_for(lambda: len(deployments(prefect_api)) >= 3, 60, "three deployments registered")
    timings["workers_ready_s"] = time.perf_counter() - started
    mine = prepared.resources
    deliveries = waves(mine, random.Random(7))
    saboteur = Saboteur(db, workers, timeout=60, after_done=len(mine) // 4)
    saboteur.start()
    started = time.perf_counter()
    await notify_all(apis, deliveries)
    timings["notify_s"] = time.perf_counter() - started
    await asyncio.to_thread(saboteur.join)
    # Only the signalled workers' batches are left; past their lease the survivor takes them.
    signalled = {str(k["pid"]) for k in saboteur.done.values()}
    with contextlib.suppress(TimeoutError):  # a failed batch of a survivor waits for its lease too
        await wait_for(lambda: all(r["status"] == "done" or (r["status"] == "processing" and str(
            r["claimed_by"]).rsplit(":", 1)[-1] in signalled) for r in inbox_rows(db)), 60,
            "only the signalled workers' events left")
    timings["drained_but_leased_s"] = time.perf_counter() - started
    lease_jumps = await _pass_leases(db, clock)
    timings["all_done_s"] = time.perf_counter() - started
    keys = {pid: await task_keys(client, pid) for pid in prepared.pids}
    inbox = inbox_rows(db)
    # Escalation time: three reminder passes at once, beside the workers' scheduled ones.
    clock.set(REMIND_AT)
    started = time.perf_counter()
    passes = [fleet.spawn(f"remind-{i}", [sys.executable, "-m", "tests.multiprocess.remind_pass"], env)
              for i in (1, 2, 3)]
    await wait_for(lambda: not any(p.alive for p in passes), 90, "reminder passes finished")
    await asyncio.sleep(1.0)  # a webhook POST in flight lands
    timings["reminders_s"] = time.perf_counter() - started
    observed = Observed(
        patients=prepared.pids, expected_keys=prepared.expected_keys, task_keys=keys,
        unique_resources=len(mine), inbox=inbox, killed=saboteur.done, pages=receiver.received(),
        reminders_sent=reminders_sent(db), deployments=deployments(prefect_api), timings=timings,
        lease_jumps=lease_jumps,
        failed_drains={n: p.log.read_text(errors="replace").count("drain failed")
                       for n, p in workers.items()})
    db.dispose()
    return observed
