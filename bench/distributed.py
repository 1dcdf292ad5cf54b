"""The distributed topology for bench/end_to_end.py: one API replica and N `eras worker`s on a
PostgreSQL store, a Prefect server on PostgreSQL, the sandbox EHR counting every request.

For each worker count (1..N, in the same run, on the same EHR and store) the bench measures
notification -> Task latency at a steady rate and the highest sustained rate, with FHIR round
trips per event counted at the EHR itself (requests it served minus the bench's own).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from store.db import make_engine
from tests.multiprocess.processes import Fleet, Proc, postgres_database
from tests.utils.counting_sandbox import CountingSandbox
from tests.utils.databases import postgres_schema, postgres_server_url


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU time the process (and, unless told not to, its reaped children: flow-run
    subprocesses, whose whole time lands at once when they end) has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def inbox_counts(db: Engine) -> dict[str, int]:
    """Inbox events by status (pending, processing, done, failed)."""
    with db.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM inbox_event GROUP BY status"))
        return {str(status): int(n) for status, n in rows}


@dataclass
class Topology:
    """What the bench drives: the API's URL, the EHR, and how to start/stop N workers."""

    api: str
    sandbox: CountingSandbox
    db: Engine
    fleet: Fleet
    env: dict[str, str]
    runner: str  # "worker" (eras worker, Prefect) or "drain" (eras drain --loop)
    batch_size: int = 200  # events a drain claims at once (the drain runner only)

    def inbox(self) -> Callable[[], Awaitable[dict[str, int]]]:
        return lambda: asyncio.to_thread(inbox_counts, self.db)

    def start_workers(self, n: int) -> list[Proc]:
        eras = [sys.executable, "-m", "eras_cli.main"]
        argv = (eras + ["worker"] if self.runner == "worker" else
                eras + ["drain", "--loop", "--batch-size", str(self.batch_size)])
        stamp = int(time.time())
        return [self.fleet.spawn(f"{self.runner}-{n}-{i}-{stamp}", argv, self.env) for i in range(n)]

    def failed_drains(self, workers: list[Proc]) -> int:
        """'drain failed' lines in the workers' logs: a batch given up until its lease expires."""
        return sum(p.log.read_text(errors="replace").count("drain failed") for p in workers
                   if p.log.exists())

    def processes(self, workers: list[Proc]) -> dict[str, int]:
        """name -> pid of what runs now: Prefect server, API, these workers, the EHR."""
        out = {p.name: p.pid for p in self.fleet.procs if p.alive and p not in workers}
        out |= {p.name: p.pid for p in workers}
        if self.sandbox.running and self.sandbox._process is not None:
            out["fhir-sandbox"] = self.sandbox._process.pid
        return out


@contextmanager
def topology(secret: str, runner: str, batch_size: int = 200) -> Iterator[Topology]:
    """Start the EHR, the store schema, (the Prefect server,) one API; stop them all after."""
    sandbox = CountingSandbox()
    with tempfile.TemporaryDirectory() as tmp, sandbox, \
            postgres_schema() as store, postgres_database(postgres_server_url()) as prefect_db:
        directory = Path(tmp)
        fleet = Fleet(directory)
        env = {**os.environ, "ERAS_DATABASE_URL": store, "ERAS_FHIR_BASE_URL": sandbox.base_url,
               "ERAS_SUBSCRIPTIONS": json.dumps({"bench": secret}), "ERAS_WORKLIST_DEV_MODE": "true",
               "ERAS_LOG_LEVEL": "WARNING", "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_HOME": str(directory / "prefect-client")}
        db = make_engine(store)
        try:
            if runner == "worker":
                started = time.perf_counter()
                _, env["PREFECT_API_URL"] = fleet.prefect_server(prefect_db, directory / "prefect")
                print(f"prefect server on PostgreSQL ready in {time.perf_counter() - started:.1f} s")
            _, api = fleet.api("api", env)
            yield Topology(api, sandbox, db, fleet, env, runner, batch_size)
        finally:
            fleet.stop_all()
            db.dispose()
