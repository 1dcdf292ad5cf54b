"""apply(patient) latency against the sandbox FHIR server for patients with ~50 facts.

Prints p50/p95 of the first apply (writes the plan: one batch read + one transaction), of a
re-apply with nothing new (one batch read), and of an apply after one new fact, with FHIR round
trips per apply. SQLite store in a temp directory (or --database-url).
Run: .venv/bin/python bench/apply.py [--patients 60] [--profile 40]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.loader import load_pathway  # noqa: E402
from fhir_adapters.client import FhirClient  # noqa: E402
from fhir_adapters.sandbox import FhirSandbox  # noqa: E402
from flows.apply import apply_patient  # noqa: E402
from flows.runtime import Runtime, WriteTarget  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from tests.utils import ehr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)


def record(pid: str) -> list[dict]:
    """~50 facts: booking, stay, surgery, labs, 30 pain scores, mobilisation, process items."""
    end = SURGERY + timedelta(hours=3)
    res = [ehr.patient(pid), ehr.booking(pid, SURGERY, SURGERY - timedelta(days=50)),
           ehr.smoking(pid, SURGERY - timedelta(days=49), current=True),
           ehr.haemoglobin(pid, SURGERY - timedelta(days=40), 12.1),
           ehr.stay(pid, SURGERY - timedelta(hours=3)), ehr.surgery(pid, SURGERY, end)]
    res += [ehr.pain(pid, end + timedelta(hours=1 + 3 * k), (k * 3) % 9) for k in range(30)]
    res += [ehr.procedure(pid, "out-of-bed", end + timedelta(hours=5 + 8 * k)) for k in range(6)]
    res += [ehr.procedure(pid, code, SURGERY - timedelta(days=d)) for code, d in
            (("preop-education", 20), ("prehabilitation", 30), ("discharge-plan", 10))]
    return res


def pct(values: list[float]) -> str:
    q = statistics.quantiles(values, n=20)
    return f"p50 {statistics.median(values) * 1e3:6.1f} ms  p95 {q[18] * 1e3:6.1f} ms"


async def run(args: argparse.Namespace) -> None:
    pathway = load_pathway(ROOT / "pathways" / "lumbar_fusion.yaml")
    with tempfile.TemporaryDirectory() as tmp, FhirSandbox() as sandbox:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        db = make_engine(url)
        async with FhirClient(sandbox.base_url) as client:
            rt = Runtime(pathways={pathway.id: pathway}, ehr=client, tasks=client,
                         target=WriteTarget.EHR, db=db, tz=ZoneInfo("Europe/London"))
            pids = [f"bench-{i}" for i in range(args.patients)]
            for pid in pids:
                await client.transaction(ehr.transaction(*record(pid)))
            now = SURGERY + timedelta(days=1, hours=6)
            phases = {"first apply": pids, "re-apply, nothing new": pids}
            for label, todo in phases.items():
                await measure(rt, label, todo, now)
            for pid in pids:
                await client.create(ehr.pain(pid, now - timedelta(minutes=5), 7))
            with profiled(args.profile):
                await measure(rt, "apply after a new NRS 7", pids, now)
        db.dispose()


@contextmanager
def profiled(top: int) -> Iterator[None]:
    """With --profile N: where this process's CPU goes (cProfile), the N costliest functions by
    cumulative time, then by own time. The EHR's share is not in it (another process)."""
    if not top:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    yield
    profile.disable()
    for order in ("cumulative", "tottime"):
        pstats.Stats(profile).strip_dirs().sort_stats(order).print_stats(top)


async def measure(rt: Runtime, label: str, pids: list[str], now: datetime) -> None:
    times, trips, written = [], [], []
    for pid in pids:
        before = rt.round_trips
        t0 = time.perf_counter()
        result = await apply_patient(rt, pid, now=now)
        times.append(time.perf_counter() - t0)
        trips.append(rt.round_trips - before)
        written.append(result.written)
    print(f"{label:>24}: {pct(times)}  round trips/apply {statistics.mean(trips):.1f} "
          f"(max {max(trips)})  resources written/apply {statistics.mean(written):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile the applies after a new NRS 7; print the N costliest functions")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
