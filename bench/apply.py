"""apply(patient) latency against the sandbox FHIR server for patients with ~50 facts.

Prints p50/p95 of the first apply (writes the plan: one batch read + one transaction), of a
re-apply with nothing new (one batch read), and of an apply after one new fact, with FHIR round
trips, this process's CPU and SQL statements per apply (the EHR is another process, so its CPU is
not in it). SQLite store in a temp directory (or --database-url).
--breakdown: the CPU of the applies after a new NRS 7 by part (engine, FHIR client, store...).
Run: .venv/bin/python bench/apply.py [--patients 60] [--profile 40] [--breakdown]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event  # noqa: E402

from bench.cpu_parts import CpuParts  # noqa: E402
from engine.loader import load_pathway  # noqa: E402
from fhir_adapters.client import FhirClient  # noqa: E402
from fhir_adapters.inbox_events import inbox_event_for_resource  # noqa: E402
from fhir_adapters.sandbox import FhirSandbox  # noqa: E402
from flows.apply import apply_patient  # noqa: E402
from flows.drain import drain_once  # noqa: E402
from flows.process_runtime import tune_collector  # noqa: E402
from flows.runtime import (  # noqa: E402
    DEFAULT_CONCURRENT_APPLIES,
    SPARE_CONNECTIONS,
    Runtime,
    WriteTarget,
)
from store.db import make_engine, session_scope  # noqa: E402
from store.inbox import store_events  # noqa: E402
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
        # As flows.config sizes it for `eras serve` and `eras worker`: a connection for each
        # apply at once and the spare ones (a smaller pool opens and closes connections per apply).
        db = make_engine(url, pool_size=DEFAULT_CONCURRENT_APPLIES + SPARE_CONNECTIONS)
        async with FhirClient(sandbox.base_url) as client:
            now = SURGERY + timedelta(days=1, hours=6)
            rt = Runtime(pathways={pathway.id: pathway}, ehr=client, tasks=client,
                         target=WriteTarget.EHR, db=db, tz=ZoneInfo("Europe/London"), clock=lambda: now)
            pids = [f"bench-{i}" for i in range(args.patients)]
            for pid in pids:
                await client.transaction(ehr.transaction(*record(pid)))
            phases = {"first apply": pids, "re-apply, nothing new": pids}
            tune_collector()  # as `eras serve` and `eras worker` do once their runtime is open
            statements = count_statements(db)
            for label, todo in phases.items():
                await measure(rt, label, todo, now, statements)
            for pid in pids:
                await client.create(ehr.pain(pid, now - timedelta(minutes=5), 7))
            with profiled(args.profile, len(pids)):
                await measure(rt, "apply after a new NRS 7", pids, now, statements)
            with broken_down(args.breakdown, len(pids)):
                await drained(rt, client, pids, now, statements, concurrency=1)
            await drained(rt, client, pids, now, statements, concurrency=rt.concurrent_applies)
        db.dispose()


async def drained(rt: Runtime, client: FhirClient, pids: list[str], now: datetime,
                  statements: list[int], *, concurrency: int) -> None:
    """As `eras serve` takes them: one more NRS 7 per patient notified into the inbox, then one
    batch drained (claim, apply, settle). One patient at a time (for --breakdown, which tells
    the parts apart only then), or as `eras serve` does, `concurrency` at once: their batch
    reads and transactions then go to the EHR together (fhir_adapters.coalesce)."""
    pain = [await client.create(ehr.pain(pid, now - timedelta(minutes=4), 7)) for pid in pids]
    with session_scope(rt.db) as session:
        store_events(session=session, at=now,
                     events=[inbox_event_for_resource(r, source="bench") for r in pain])
    cpu, sql, commits, trips = time.process_time(), statements[0], statements[1], rt.round_trips
    t0 = time.perf_counter()
    result = await drain_once(rt, worker="bench", batch_size=len(pids), now=now, concurrency=concurrency)
    wall = time.perf_counter() - t0
    assert len(result.applied) == len(pids), result
    n = len(pids)
    label = "drained, a new NRS 7 each" if concurrency == 1 else f"the same, {concurrency} at once"
    print(f"{label:>24}: {n} events in one batch, {wall / n * 1e3:.1f} ms each; "
          f"round trips/event {(rt.round_trips - trips) / n:.1f}")
    print(f"{'':>24}  CPU/event {(time.process_time() - cpu) / n * 1e3:.1f} ms (this process)  "
          f"SQL statements/event {(statements[0] - sql) / n:.1f}  "
          f"commits/event {(statements[1] - commits) / n:.1f}")


def count_statements(db: Any) -> list[int]:
    """[SQL statements, commits] sent so far on `db` (BEGIN included, as the driver sees it)."""
    counts = [0, 0]

    def statement(*_: Any) -> None:
        counts[0] += 1

    def commit(*_: Any) -> None:
        counts[1] += 1
    event.listen(db, "before_cursor_execute", statement)
    event.listen(db, "commit", commit)
    return counts


@contextmanager
def profiled(top: int, applies: int) -> Iterator[None]:
    """With --profile N: where this process's CPU goes (cProfile), the N costliest functions by
    cumulative time, then by own time, and the Python calls per apply. The EHR's share is not in
    it (another process)."""
    if not top:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    yield
    profile.disable()
    for order in ("cumulative", "tottime"):
        stats = pstats.Stats(profile).strip_dirs().sort_stats(order)
        stats.print_stats(top)
    print(f"Python calls per apply: {stats.total_calls / applies:,.0f}")  # type: ignore[attr-defined]


# The parts of a drained event timed by --breakdown: (module[:class], name, label, group). What no
# other part claims is flows.drain's and flows.apply's own code.
PARTS = [
    ("__main__", "drain_once", "drain_once", "drain: claim, settle"),
    ("flows.drain", "claim_batch", "claim_batch", "drain: claim, settle"),
    ("flows.drain", "settle_irrelevant", "settle_irrelevant", "drain: claim, settle"),
    ("flows.drain", "_group_by_patient", "_group_by_patient", "drain: claim, settle"),
    ("flows.drain", "parked_patients", "parked_patients", "drain: claim, settle"),
    ("flows.drain", "mark_done", "mark_done", "drain: claim, settle"),
    ("flows.drain", "clear_failures", "clear_failures", "drain: claim, settle"),
    ("flows.drain", "_claim", "_claim (PostgreSQL: on a store thread)", "drain: claim, settle"),
    ("flows.drain", "apply_patient", "flows.apply glue", "flows.apply glue (+ patient lock)"),
    ("flows.apply", "_decide", "_decide (PostgreSQL: on a store thread)",
     "flows.apply glue (+ patient lock)"),
    ("flows.runtime", "_transaction", "in_transaction (PostgreSQL: on a store thread)",
     "store: transactions"),
    ("flows.apply", "session_scope", "sessions (BEGIN, code in them no part claims)", "store: transactions"),
    ("sqlalchemy.orm.session:SessionTransaction", "commit", "commit (last flush, COMMIT)",
     "store: transactions"),
    ("flows.apply", "_enrol_from_record", "_enrol_from_record (enrolments, pending, open)", "store: reads"),
    ("flows.apply", "require_enrolment", "require_enrolment", "store: reads"),
    ("flows.apply", "find_enrolments", "find_enrolments", "store: reads"),
    ("flows.apply", "pending_fhir_writes", "pending_fhir_writes", "store: reads"),
    ("flows.apply", "list_actions", "list_actions", "store: reads"),
    ("flows.apply", "sync_actions", "sync_actions", "store: writes"),
    ("flows.apply", "update_enrolment_context", "update_enrolment_context", "store: writes"),
    ("flows.apply", "record_element_results", "record_element_results", "store: writes"),
    ("flows.apply", "episode_attributes", "episode_attributes", "store: writes"),
    ("flows.apply", "record_facts", "record_facts (UPDATE)", "store: writes"),
    ("store.episode_facts", "patient_json", "record_facts: patient_json", "store: writes"),
    ("flows.apply", "record_outcomes", "record_outcomes", "store: writes"),
    ("flows.apply", "record_fhir_ids", "record_fhir_ids", "store: writes"),
    ("flows.apply", "record_careplan", "record_careplan", "store: writes"),
    ("flows.apply", "evaluate", "evaluate", "engine"),
    ("flows.apply", "patient_outcomes", "patient_outcomes", "engine"),
    ("flows.apply", "facts_from_resources", "facts_from_resources", "FHIR: record -> facts"),
    ("flows.apply", "withdraw_if_cancelled", "withdraw_if_cancelled", "FHIR: record -> facts"),
    ("flows.apply", "cancellation_reason", "cancellation_reason", "FHIR: record -> facts"),
    ("flows.apply", "resources_from_batch_response", "resources_from_batch_response",
     "FHIR: record -> facts"),
    ("flows.apply", "batch_bundle", "batch_bundle", "FHIR: record -> facts"),
    ("flows.apply", "resolve_locations", "resolve_locations", "FHIR: record -> facts"),
    ("flows.unbound_codes:UnboundCodeCounter", "observe", "UNBOUND_CODES.observe", "FHIR: record -> facts"),
    ("fhir_adapters.client:FhirClient", "_send", "httpx request/response", "FHIR: HTTP client"),
    ("fhir_adapters.client:FhirClient", "request", "FhirClient (retries, auth, checks)", "FHIR: HTTP client"),
    ("fhir_adapters.client", "_decode", "JSON decode (orjson)", "FHIR: HTTP client"),
    ("fhir_adapters.client", "_dumps", "JSON encode", "FHIR: HTTP client"),
    ("flows.apply", "_action_states", "_action_states", "flows.apply glue (+ patient lock)"),
    ("flows.apply", "_own_resources", "_own_resources", "flows.apply glue (+ patient lock)"),
    ("flows.apply", "_pending_writes", "_pending_writes", "flows.apply glue (+ patient lock)"),
    ("flows.apply", "_sync", "_sync", "flows.apply glue (+ patient lock)"),
    ("flows.apply", "plan_writes", "plan_writes (Tasks built)", "FHIR: writes built"),
    ("flows.apply", "transaction_for", "transaction_for", "FHIR: writes built"),
    ("flows.apply", "written_ids", "written_ids", "FHIR: writes built"),
]


@contextmanager
def broken_down(on: bool, applies: int) -> Iterator[None]:
    """With --breakdown: this process's CPU per drained event by part (`PARTS`), own times."""
    if not on:
        yield
        return
    parts = CpuParts()
    for module, name, label, _ in PARTS:
        path, _, cls = module.partition(":")
        owner: Any = importlib.import_module(path)
        parts.wrap(getattr(owner, cls) if cls else owner, name, label, context=name == "session_scope")
    parts.time_gc()
    try:
        yield
    finally:
        parts.restore()
    print("CPU per drained event (a new NRS 7), by part (own time; thread CPU, with timer overhead):")
    print(parts.table(applies, {label: group for _, _, label, group in PARTS}))


async def measure(rt: Runtime, label: str, pids: list[str], now: datetime, statements: list[int]) -> None:
    times, trips, written = [], [], []
    cpu, sql, commits = time.process_time(), statements[0], statements[1]
    for pid in pids:
        before = rt.round_trips
        t0 = time.perf_counter()
        result = await apply_patient(rt, pid, now=now)
        times.append(time.perf_counter() - t0)
        trips.append(rt.round_trips - before)
        written.append(result.written)
    print(f"{label:>24}: {pct(times)}  round trips/apply {statistics.mean(trips):.1f} "
          f"(max {max(trips)})  resources written/apply {statistics.mean(written):.1f}")
    print(f"{'':>24}  CPU/apply {(time.process_time() - cpu) / len(pids) * 1e3:.1f} ms (this process)  "
          f"SQL statements/apply {(statements[0] - sql) / len(pids):.1f}  "
          f"commits/apply {(statements[1] - commits) / len(pids):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile the applies after a new NRS 7; print the N costliest functions")
    ap.add_argument("--breakdown", action="store_true",
                    help="the CPU of the applies after a new NRS 7 by part of the code")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
