"""`eras audit recompute` over 50,000 stored episodes (~50 facts each) on SQLite and PostgreSQL.

Seeds enrolments, audit episodes and their stored facts (no results yet), then times a recompute
that writes every result (as after a pathway change that moves most of them), a re-run that
writes nothing, and a recompute with version 2 of the pathway, where one element's window changed
(the urinary catheter may stay 48 h, not 24 h: a made-up change), as a quality team would run it
after a version change: every episode is evaluated in full, few results are rewritten. Prints
episodes/s, wall time, the CPU used by all processes as a share of the machine's cores, and peak
RSS (this process and the largest worker).
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
    job = RecomputeJob(url, PATHWAY, None, "Europe/London")
    timed(f"{name} recompute (writes every result)", job, n, workers)
    timed(f"{name} re-run (nothing changed)", job, n, workers)
    changed = RecomputeJob(url, v2, None, "Europe/London")
    timed(f"{name} recompute with version 2 (one window changed)", changed, n, workers)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    kid = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"{name}: peak RSS {me} MiB (this process), {kid} MiB (largest worker)", flush=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count() or 1
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        v2 = version_2(Path(tmp))
        measure("sqlite", f"sqlite:///{Path(tmp)}/recompute.db", n, workers, v2)
        with postgres_schema(migrate=False) as url:
            measure("postgresql", url, n, workers, v2)


if __name__ == "__main__":
    main()
