"""`eras audit recompute` over 50,000 stored episodes (~50 facts each) on SQLite and PostgreSQL.

Seeds enrolments, audit episodes and their stored facts (no results yet), then times a recompute
that writes every result (as after a pathway change that moves most of them) and a re-run that
writes nothing. Prints episodes/s, wall time, the CPU used by all processes as a share of the
machine's cores, and peak RSS (this process and the largest worker).
Goal: <= 20 s on 2 cores, both used. Usage: python -m bench.recompute [episodes] [workers]
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


def timed(name: str, job: RecomputeJob, n: int, workers: int) -> None:
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    done = recompute(job, "lumbar_fusion", workers=workers)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    assert done == n
    cores = os.cpu_count() or 1
    print(f"{name}: {done} episodes in {wall:.1f} s = {done / wall:.0f} episodes/s; CPU {cpu:.1f} s = "
          f"{cpu / wall / cores:.0%} of {cores} cores ({workers} workers)", flush=True)


def measure(name: str, url: str, n: int, workers: int) -> None:
    t0 = time.perf_counter()
    seed(url, n)
    print(f"{name}: seeded {n} episodes with stored facts in {time.perf_counter() - t0:.1f} s", flush=True)
    job = RecomputeJob(url, PATHWAY, None, "Europe/London")
    timed(f"{name} recompute (writes every result)", job, n, workers)
    timed(f"{name} re-run (nothing changed)", job, n, workers)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    kid = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"{name}: peak RSS {me} MiB (this process), {kid} MiB (largest worker)", flush=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count() or 1
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{Path(tmp)}/recompute.db", n, workers)
    with postgres_schema(migrate=False) as url:
        measure("postgresql", url, n, workers)


if __name__ == "__main__":
    main()
