"""Memory of `eras serve` holding many enrolled patients (SQLite, sandbox EHR).

Books --patients (1,000) patients for surgery in three weeks, notifies each booking as the EHR
would, waits until every one is enrolled and its pre-admission plan written, then sends each
patient one more event (a new smoking status) and waits for those applies too. Prints the
serve process's peak RSS (VmHWM) and current RSS after each phase. Goal: < 500 MiB.
Run: .venv/bin/python bench/serve_memory.py [--patients 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.distributed import peak_rss_mib  # noqa: E402
from bench.end_to_end import SECRET, Bench, Served, serving  # noqa: E402
from fhir_adapters.sandbox import FhirSandbox  # noqa: E402
from store.db import make_engine  # noqa: E402
from tests.utils import ehr  # noqa: E402


def rss_mib(pid: int) -> float:
    """The process's resident set now (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def notify_all(served: Served, resources: list[dict], concurrency: int = 8) -> None:
    queue = list(resources)

    async def sender() -> None:
        while queue:
            response = await served.http.post(f"{served.api}/fhir/notifications/bench", json=queue.pop(),
                                              headers={"Authorization": f"Bearer {SECRET}"})
            response.raise_for_status()
    await asyncio.gather(*(sender() for _ in range(concurrency)))


def active_enrolments(database_url: str) -> int:
    db = make_engine(database_url)
    try:
        with db.connect() as conn:
            query = text("SELECT count(*) FROM enrolment WHERE status = 'active'")
            return int(conn.execute(query).scalar_one())
    finally:
        db.dispose()


async def phase(served: Served, bench: Bench, label: str, resources: list[dict],
                drain_seconds: float) -> None:
    started = time.perf_counter()
    await notify_all(served, resources)
    left = await bench.drained(drain_seconds)
    enrolled = await asyncio.to_thread(active_enrolments, served.database_url)
    print(f"  {label}: {len(resources)} events in {time.perf_counter() - started:.0f} s ({left} left); "
          f"{enrolled} patients enrolled; eras serve RSS now {rss_mib(served.pid):.0f} MiB, "
          f"peak {peak_rss_mib(served.pid):.0f} MiB (goal < 500)", flush=True)


async def run(args: argparse.Namespace) -> None:
    now = datetime.now(UTC)
    surgery = now + timedelta(days=21)
    with FhirSandbox() as sandbox:
        async with serving(sandbox) as served:
            print(f"eras serve, SQLite: {args.patients} patients booked; peak RSS at start "
                  f"{peak_rss_mib(served.pid):.0f} MiB", flush=True)
            bookings = []
            for i in range(args.patients):
                pid = f"mem-{i}"
                await served.client.transaction(ehr.transaction(ehr.patient(pid)))
                booking = ehr.booking(pid, surgery, now - timedelta(days=1))
                bookings.append(await served.client.create(booking))
            bench = Bench(served.api, served.client, served.http, served.inbox, served.trips)
            await phase(served, bench, "bookings (enrol, pre-admission plan)", bookings, args.drain_seconds)
            smoking = [await served.client.create(ehr.smoking(f"mem-{i}", now, current=False))
                       for i in range(args.patients)]
            await phase(served, bench, "one more event each (re-apply)", smoking, args.drain_seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--drain-seconds", type=float, default=900)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
