"""Measure notification intake: acknowledged/s and ack latency, against a bare-INSERT baseline.

Each server runs in its own uvicorn process on a loopback port (the client in this one, so
the two do not share a GIL); both insert the same inbox row, into fresh databases of the
same kind. The baseline is a bare FastAPI endpoint doing a plain SQL INSERT, group-committed
like the real endpoint; the old baseline (a commit per request) is measured too, for comparison.

Run: .venv/bin/python bench/intake.py [-n 3000] [--concurrency 16]
         [--database-url postgresql://postgres@127.0.0.1:5432/test] [--sqlite-synchronous NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import JSON, bindparam, event, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.distributed import peak_rss_mib  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.types import UTCDateTime  # noqa: E402

SUBSCRIPTION = "bench"
TOKEN = "bench-token"
WARM_UP = 200
_INSERT = text(
    "INSERT INTO inbox_event (received_at, source, kind, dedup_key, resource_type, resource_id, "
    "patient_ref, payload, status, attempts) VALUES (:received_at, :source, 'event', :dedup_key, "
    ":resource_type, :resource_id, :patient_ref, :payload, 'pending', 0)"
).bindparams(bindparam("received_at", type_=UTCDateTime()), bindparam("payload", type_=JSON()))


@dataclass(frozen=True)
class Result:
    label: str
    count: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float
    server_peak_rss: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def line(self) -> str:
        cuts = statistics.quantiles(self.latencies, n=100)
        return (
            f"{self.label:<9} {self.rate:8.0f} ack/s   p50 {cuts[49] * 1000:6.1f} ms   "
            f"p95 {cuts[94] * 1000:6.1f} ms   p99 {cuts[98] * 1000:6.1f} ms   "
            f"({self.count} in {self.seconds:.1f} s)\n{'':<9} CPU per request: "
            f"server {self.server_cpu / self.count * 1000:.2f} ms, "
            f"client {self.client_cpu / self.count * 1000:.2f} ms; server peak RSS "
            f"{self.server_peak_rss:.0f} MiB"
        )


def baseline_app() -> FastAPI:
    """The baseline: read the body, insert the same row with plain SQL, answer 200 once committed.

    Like the real endpoint it group-commits (api/intake/batcher.py): requests that arrive while
    a transaction is written go into the next one together, one writer on SQLite and four on
    PostgreSQL, at most 128 rows a commit. ERAS_BASELINE_PER_REQUEST=1 commits each request on
    its own (the old baseline, which a group-committing endpoint could beat unfairly).
    """
    url = os.environ["ERAS_DATABASE_URL"]
    synchronous = os.environ.get("ERAS_SQLITE_SYNCHRONOUS", "FULL")
    per_request = os.environ.get("ERAS_BASELINE_PER_REQUEST") == "1"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(url)
        if app.state.engine.dialect.name == "sqlite":
            _sqlite_synchronous(app.state.engine, synchronous)
        app.state.commits = _GroupCommit(app.state.engine)
        writer = asyncio.create_task(app.state.commits.run())
        yield
        writer.cancel()
        app.state.engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/baseline")
    async def insert(request: Request) -> Response:
        resource = json.loads(await request.body())
        row = {
            "received_at": datetime.now(UTC),
            "source": SUBSCRIPTION,
            "dedup_key": f"res:Observation/{resource['id']}/_history/{resource['meta']['versionId']}",
            "resource_type": resource["resourceType"],
            "resource_id": resource["id"],
            "patient_ref": resource["subject"]["reference"],
            "payload": resource,
        }
        if per_request:
            await run_in_threadpool(_insert, request.app.state.engine, [row])
        else:
            await request.app.state.commits.add(row)
        return Response(status_code=200)

    return app


class _GroupCommit:
    """Rows queue while a transaction is written; each waits for the commit that holds it."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._writers = 1 if engine.dialect.name == "sqlite" else 4
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]] = asyncio.Queue()

    async def add(self, row: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((row, done))
        await done

    async def run(self) -> None:
        slots = asyncio.Semaphore(self._writers)
        while True:
            await slots.acquire()
            batch = [await self._queue.get()]
            while len(batch) < 128 and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            task = asyncio.create_task(self._commit(batch))
            task.add_done_callback(lambda _task: slots.release())

    async def _commit(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        try:
            await run_in_threadpool(_insert, self._engine, [row for row, _ in batch])
        except Exception as exc:
            for _, done in batch:
                done.set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)


def _insert(engine: Any, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(_INSERT, rows)


def _sqlite_synchronous(engine: Any, level: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA synchronous={level}")


def _observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": uuid.uuid4().hex,
        "meta": {"versionId": "1", "lastUpdated": "2025-03-10T08:00:00Z"},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3", "display": "Pain severity"}]},
        "subject": {"reference": f"Patient/{uuid.uuid4().hex[:12]}"},
        "effectiveDateTime": "2025-03-10T08:00:00Z",
        "valueInteger": 3,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server(factory: str, database_url: str, synchronous: str,
            extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A uvicorn process serving `factory`; yields its base URL and process id."""
    port = _free_port()
    env = os.environ | {
        "ERAS_DATABASE_URL": database_url,
        "ERAS_SUBSCRIPTIONS": json.dumps({SUBSCRIPTION: TOKEN}),
        "ERAS_SQLITE_SYNCHRONOUS": synchronous,
        "ERAS_WORKLIST_DEV_MODE": "true",  # the whole API starts only with a sign-in configured
    } | (extra_env or {})
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base_url, process)
        yield base_url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(f"{base_url}/docs", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("server did not start within 60 s")


async def _send(base_url: str, path: str, count: int, concurrency: int) -> tuple[float, list[float]]:
    bodies = [json.dumps(_observation()).encode() for _ in range(count)]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while bodies:
                body = bodies.pop()
                started = time.perf_counter()
                response = await client.post(path, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"{path} answered {response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def _measure(label: str, factory: str, path: str, database_url: str, args: argparse.Namespace,
             extra_env: dict[str, str] | None = None) -> Result:
    with _server(factory, database_url, args.sqlite_synchronous, extra_env) as (base_url, pid):
        asyncio.run(_send(base_url, path, WARM_UP, args.concurrency))
        server_before, client_before = _cpu_seconds(pid), time.process_time()
        seconds, latencies = asyncio.run(_send(base_url, path, args.n, args.concurrency))
        server_cpu, client_cpu = _cpu_seconds(pid) - server_before, time.process_time() - client_before
        peak = peak_rss_mib(pid)
    return Result(label, args.n, seconds, latencies, server_cpu, client_cpu, peak)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to tell server cost from machine load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _databases(database_url: str | None) -> Iterator[tuple[str, ...]]:
    """Three fresh, migrated databases of the same kind: SQLite files or PostgreSQL schemas."""
    names = ("intake", "baseline", "per_request")
    if database_url is None:
        with tempfile.TemporaryDirectory() as directory:
            urls = tuple(f"sqlite:///{Path(directory) / name}.db" for name in names)
            for url in urls:
                upgrade(url)
            yield urls
        return
    schemas = [f"bench_intake_{secrets.token_hex(3)}" for _ in names]
    for schema in schemas:
        upgrade(database_url, schema=schema)
    try:
        yield tuple(_schema_url(database_url, schema) for schema in schemas)
    finally:
        engine = make_engine(database_url)
        with engine.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def _schema_url(url: str, schema: str) -> str:
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=3000, help="notifications per run (after a warm-up)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", help="PostgreSQL URL; default: SQLite files in a temp dir")
    parser.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args()
    with _databases(args.database_url) as (intake_url, baseline_url, per_request_url):
        intake = _measure(
            "intake", "api.main:create_app", f"/fhir/notifications/{SUBSCRIPTION}", intake_url, args
        )
        baseline = _measure("baseline", "bench.intake:baseline_app", "/baseline", baseline_url, args)
        old = _measure("old-base", "bench.intake:baseline_app", "/baseline", per_request_url, args,
                       {"ERAS_BASELINE_PER_REQUEST": "1"})
    kind = "PostgreSQL" if args.database_url else f"SQLite (synchronous={args.sqlite_synchronous})"
    print(f"{kind}, {args.n} notifications, concurrency {args.concurrency}")
    print(intake.line())
    print(baseline.line())
    print(old.line())
    print(f"intake / baseline (group commit, fair) = {intake.rate / baseline.rate:.2f}; "
          f"intake / old baseline (a commit per request) = {intake.rate / old.rate:.2f}")


if __name__ == "__main__":
    main()
