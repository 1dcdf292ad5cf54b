"""`eras audit recompute` over 50,000 stored episodes (~50 facts each) on SQLite and PostgreSQL.

Seeds enrolments, audit episodes and their stored facts (no results, no plan recorded), then
times: a recompute that evaluates every episode in full and writes every result (the first one
after this release); a re-run (the plan that decided every episode is the current one: decided in
SQL, nothing read or written); version 2 of the pathway, where one element's window changed (the
urinary catheter may stay 48 h, not 24 h: a made-up change), as a quality team would run it after
a version change: only that element is re-evaluated; back to version 1 (the same work again), then
version 2 with incremental re-evaluation off (`--full`), for the ratio of the two in one run.
Prints episodes/s, wall time, the CPU used by all processes as a share of the machine's cores
(PostgreSQL's server included), and peak RSS (this process and the largest worker).
Goal: <= 20 s on 2 cores, both used.
Usage: python -m bench.recompute [episodes] [workers] [sqlite|postgresql|both]
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from bench.audit import ENROLMENT, EPISODE, ROOT, Row, load_postgres, load_sqlite
from bench.synthetic import synthetic_patient
from engine.patientfile import patient_json
from flows.recompute import RecomputeJob, recompute
from store.db import make_engine
from store.migrate import upgrade
from tests.utils.databases import postgres_schema

PATHWAY = ROOT / "pathways" / "lumbar_fusion.yaml"
FACTS = "enrolment_id, facts, evaluated_at"


def rows(n: int) -> Iterator[tuple[Row, Row, Row]]:
    rng = random.Random(5)
    for i in range(n):
        facts, now = synthetic_patient(i, rng)
        eid = f"r{i:07d}"
        yield ((eid, f"Patient/{facts.patient_id}", "lumbar_fusion", 1, "{}", "{}", "active", now, "bench",
                now, "W1", 0),
               (eid, f"Patient/{facts.patient_id}", "lumbar_fusion", 1, None, None, "{}", "W1", None, None,
                None, 0, 0, 0, 0, None, None, now),  # results and figures: the recompute's job
               (eid, json.dumps({**patient_json(facts), "enrolment": eid}), now))


def seed(url: str, n: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    enrol, episodes, facts = zip(*rows(n), strict=True)
    tables = {"enrolment": (ENROLMENT, list(enrol)), "audit_episode": (EPISODE, list(episodes)),
              "episode_facts": (FACTS, list(facts))}
    (load_sqlite if engine.dialect.name == "sqlite" else load_postgres)(engine, tables)
    engine.dispose()


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def server_cpu_seconds(url: str) -> float:
    """CPU of the PostgreSQL server's processes (it runs on this machine's cores too); 0 for SQLite."""
    if not url.startswith("postgresql"):
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = (stat.parent / "comm").read_text().strip()
        except OSError:
            continue
        if name.startswith("postgres"):  # its own CPU and its ended backends' (reaped by the postmaster)
            total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def timed(name: str, job: RecomputeJob, n: int, workers: int) -> float:
    """Run one recompute; print what it did, its rate, wall time and CPU; return the wall time."""
    cpu0, db0, t0 = cpu_seconds(), server_cpu_seconds(job.database_url), time.perf_counter()
    done = recompute(job, "lumbar_fusion", workers=workers)
    wall = time.perf_counter() - t0
    cpu, db = cpu_seconds() - cpu0, server_cpu_seconds(job.database_url) - db0
    assert done.total == n
    cores = os.cpu_count() or 1
    server = f" + server {db:.1f} s" if db else ""
    print(f"{name}: {done.total} episodes in {wall:.1f} s = {done.total / wall:.0f} episodes/s "
          f"({done.full} in full, {done.incremental} in the changed elements, {done.unchanged} unchanged); "
          f"CPU {cpu:.1f} s{server} = {(cpu + db) / wall / cores:.0%} of {cores} cores ({workers} workers)",
          flush=True)
    return wall


def version_2(directory: Path) -> Path:
    """The pathway with the catheter window closing at 48 h instead of 24 h, as version 2."""
    text = PATHWAY.read_text()
    old = ('urinary_catheter_removed.exists()"\n'
           "    window: {anchor: surgery_end, opens: -12h, due: 18h, closes: 24h}")
    new = old.replace("24h", "48h")
    assert text.count(old) == 1 and "\nversion: 1\n" in text
    (directory / "library").symlink_to(PATHWAY.parent / "library")  # its includes
    path = directory / PATHWAY.name
    path.write_text(text.replace(old, new).replace("\nversion: 1\n", "\nversion: 2\n"))
    return path


def measure(name: str, url: str, n: int, workers: int, v2: Path) -> None:
    t0 = time.perf_counter()
    seed(url, n)
    print(f"{name}: seeded {n} episodes with stored facts in {time.perf_counter() - t0:.1f} s", flush=True)
    v1_job = RecomputeJob(url, PATHWAY, None, "Europe/London")
    v2_job = RecomputeJob(url, v2, None, "Europe/London")
    timed(f"{name} recompute (no plan recorded yet: full, writes every result)", v1_job, n, workers)
    timed(f"{name} re-run (nothing changed)", v1_job, n, workers)
    incremental = timed(f"{name} version 2, one window changed", v2_job, n, workers)
    timed(f"{name} back to version 1", v1_job, n, workers)
    full = timed(f"{name} version 2, one window changed, with --full", replace(v2_job, incremental=False),
                 n, workers)
    print(f"{name}: one window changed, incremental vs full: {full / incremental:.1f}x faster", flush=True)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    kid = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"{name}: peak RSS {me} MiB (this process), {kid} MiB (largest worker)", flush=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count() or 1
    databases = sys.argv[3] if len(sys.argv) > 3 else "both"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        v2 = version_2(Path(tmp))
        if databases in ("sqlite", "both"):
            measure("sqlite", f"sqlite:///{Path(tmp)}/recompute.db", n, workers, v2)
        if databases in ("postgresql", "both"):
            with postgres_schema(migrate=False) as url:
                measure("postgresql", url, n, workers, v2)


if __name__ == "__main__":
    main()
