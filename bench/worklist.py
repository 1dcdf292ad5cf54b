"""The ward worklist at 2,000 open tasks in a store of 100,000, SQLite and PostgreSQL: the store
query alone, then `GET /worklist` through HTTP on a real uvicorn server with a signed token (auth,
query, access log, JSON): the default first page and the whole ward in one response. Prints
p50/p95 and the server's peak RSS.

    python -m bench.worklist [--sqlite-only]
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from bench.distributed import cpu_seconds, peak_rss_mib
from bench.intake import _server as uvicorn_server
from store.db import make_engine
from store.migrate import upgrade
from store.worklist import open_actions
from tests.utils.databases import postgres_schema
from tests.utils.worklist import seed_ward_tasks

TOTAL, ON_WARD, PER_PATIENT, RUNS, HTTP_RUNS = 100_000, 2_000, 20, 50, 100


def seed(engine: Engine, now: datetime) -> None:
    """TOTAL tasks over 50 wards; ON_WARD of them open on ward 'BENCH'."""
    seed_ward_tasks(engine, now, ward="BENCH", total=TOTAL, on_ward=ON_WARD, per_patient=PER_PATIENT)


def _percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def measure(engine: Engine, now: datetime) -> tuple[float, float, int]:
    """p50 and p95 in ms of the ward query, and the rows it returned."""
    times, count = [], 0
    for _ in range(RUNS):
        with Session(engine) as session:
            started = time.perf_counter()
            count = len(open_actions(session=session, ward="BENCH", until=now + timedelta(hours=4)))
            times.append((time.perf_counter() - started) * 1000)
    return (*_percentiles(times), count)


def measure_http(url: str) -> None:
    """GET /worklist on a uvicorn process (dev sign-in: an RS256 token the API verifies on
    every request, as it would an identity provider's), one request at a time."""
    server = uvicorn_server("api.main:create_app", url, "FULL")
    with server as (base, pid), httpx.Client(base_url=base) as http:
        grant = http.post("/auth/dev-token", json={"subject": "bench.nurse", "roles": ["nurse"],
                                                   "wards": ["BENCH"]})
        headers = {"Authorization": f"Bearer {grant.raise_for_status().json()['access_token']}"}
        for label, query in (("first page", "ward=BENCH"), ("whole ward", "ward=BENCH&limit=2000")):
            times, size, count, cpu = [], 0, 0, 0.0
            for run in range(HTTP_RUNS + 5):  # 5 warm-up requests
                if run == 5:
                    cpu = cpu_seconds(pid)
                started = time.perf_counter()
                response = http.get(f"/worklist?{query}", headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                body = response.raise_for_status().json()
                size, count = len(response.content), len(body["items"])
                if run >= 5:
                    times.append(elapsed)
            p50, p95 = _percentiles(times)
            # Server CPU per request: what the API costs, whatever else the machine is doing.
            per_request = (cpu_seconds(pid) - cpu) / HTTP_RUNS * 1000
            print(f"  HTTP {label:10} {count} items, {size / 1024:.0f} KiB  p50 {p50:.1f} ms"
                  f"  p95 {p95:.1f} ms  server CPU {per_request:.1f} ms/request")
        print(f"  server peak RSS {peak_rss_mib(pid):.0f} MiB")


def run(name: str, url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    seed(engine, now)
    p50, p95, count = measure(engine, now)
    print(f"{name:10} store query {count} rows  p50 {p50:.1f} ms  p95 {p95:.1f} ms")
    engine.dispose()
    measure_http(url)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        run("sqlite", f"sqlite:///{Path(directory) / 'bench.db'}")
    if "--sqlite-only" not in sys.argv:
        with postgres_schema(migrate=False) as url:
            run("postgresql", url)
    print(f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
