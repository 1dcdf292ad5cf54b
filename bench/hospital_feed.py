"""A whole hospital's event feed through `eras serve` (SQLite, one process, sandbox EHR).

The EHR sends every patient's events, not only ERAS patients'. At --rate events/s (200) for
--seconds (60), as rest-hook notifications carrying the resource: 5 % a new pain score NRS 7
for one of 40 admitted, enrolled patients (each must become a reassessment Task), the rest
about other patients: other wards' observations (63 %), ADT encounters (30 %) and other
procedures (2 %; a procedure could enrol, so these are applied). The other patients' events
are sent by a process of its own (bench/feed_sender.py: pre-built requests, kept-alive
connections), the enrolled ones from here (each written to the EHR, notified, then its Task
polled for). Prints the load, the backlog every 5 s, the enrolled events' notification -> Task
p50/p95, events done vs sent, the CPU of `eras serve`, of the sender and of this process, then
the CPU `eras serve` spends per irrelevant event (a phase sending only those; intake included),
and peak RSS.
Run: .venv/bin/python bench/hospital_feed.py [--rate 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.distributed import cpu_seconds, peak_rss_mib  # noqa: E402
from bench.end_to_end import SECRET, Bench, Served, seed, serving, stage  # noqa: E402
from bench.feed_sender import Sender, Sent, request_bytes  # noqa: E402
from fhir_adapters.sandbox import FhirSandbox  # noqa: E402
from tests.utils import ehr  # noqa: E402

OTHERS = 100  # other patients in the EHR, for the procedures (applied: they must exist)
SNOMED = "http://snomed.info/sct"
HEADERS = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/fhir+json"}
MIX = (("enrolled", 0.05), ("observation", 0.63), ("adt", 0.30), ("procedure", 0.02))


def other_event(kind: str, rng: random.Random) -> dict[str, Any]:
    """A resource about a patient not on any pathway: what the rest of the hospital records."""
    now = datetime.now(UTC)
    if kind == "procedure":  # appendicectomy: no pathway enrols on it
        resource = ehr.procedure(f"other-{rng.randrange(OTHERS)}", "80146002", now, system=SNOMED)
    elif kind == "adt":
        resource = {"resourceType": "Encounter", "status": "in-progress",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                    "subject": {"reference": f"Patient/ward-{rng.randrange(5000)}"}}
    else:  # heart rate on another ward
        resource = ehr.observation(f"ward-{rng.randrange(5000)}", "http://loinc.org", "8867-4", now,
                                   value=rng.randrange(50, 120))
    return resource | {"id": uuid.uuid4().hex, "meta": {"versionId": "1"}}


class Feed:
    """Sends the mixed feed and keeps what it needs to report."""

    def __init__(self, served: Served, bench: Bench, pids: list[str]) -> None:
        self.served, self.bench, self.pids = served, bench, pids
        self.rng = random.Random(14)
        self.sent: dict[str, int] = {kind: 0 for kind, _ in MIX}
        self.latencies: list[asyncio.Task[float]] = []
        self.sender: Sent | None = None  # what the sender process did in the last run
        self.seconds = 0.0  # the last run's sending time, from its first send to its last answer

    async def run(self, rate: float, seconds: float, mix: tuple[tuple[str, float], ...]) -> None:
        kinds, weights = zip(*mix, strict=True)
        plan = [self.rng.choices(kinds, weights)[0] for _ in range(int(rate * seconds))]
        url = f"{self.served.api}/fhir/notifications/bench"
        # Built before sending, so that the sender's own CPU does not cap the rate it offers.
        bodies = {k: json.dumps(other_event(kind, self.rng)).encode()
                  for k, kind in enumerate(plan) if kind != "enrolled"}
        sender = Sender(url, [(k / rate, request_bytes(url, HEADERS, body)) for k, body in bodies.items()])
        await sender.start()
        started = time.perf_counter()
        for k, kind in enumerate(plan):
            self.sent[kind] += 1
            if kind == "enrolled":
                await asyncio.sleep(max(0.0, started + k / rate - time.perf_counter()))
                pid = self.pids[self.sent[kind] % len(self.pids)]
                self.latencies.append(asyncio.create_task(asyncio.wait_for(self.bench.event(pid), 120)))
        self.sender = await sender.result()
        self.seconds = time.perf_counter() - started
        if self.sender.failed:
            raise SystemExit(f"{self.sender.failed} notifications were refused")


async def watch(served: Served, start: float, feed: Feed, done_before: int) -> None:
    """Print the backlog every 5 s while the feed runs."""
    while True:
        await asyncio.sleep(5)
        counts = await served.inbox()
        backlog = counts.get("pending", 0) + counts.get("processing", 0)
        print(f"  t={time.perf_counter() - start:5.1f} s  sent {sum(feed.sent.values()):6d}  "
              f"backlog {backlog:5d}  done {counts.get('done', 0) - done_before:6d}", flush=True)


async def hospital(served: Served, sandbox_pid: int, args: argparse.Namespace) -> None:
    pids = await seed(served.client, datetime.now(UTC))
    for first in range(0, OTHERS, 20):  # the sandbox takes a few updates per transaction
        await served.client.transaction(ehr.transaction(
            *(ehr.patient(f"other-{i}") for i in range(first, first + 20))))
    bench = Bench(served.api, served.client, served.http, served.inbox, served.trips)
    bench.poll_seconds = 0.25  # a search per outstanding event and poll: keep the EHR's load down
    await bench.announce_bookings(pids)  # warm-up: enrolments and first plans
    await stage(bench, pids, 8, 5)
    await bench.drained()
    await bench.learn_enrolments(pids)
    feed = Feed(served, bench, pids)
    done_before = (await served.inbox()).get("done", 0)
    cpu_before = {"eras serve": cpu_seconds(served.pid), "fhir sandbox": cpu_seconds(sandbox_pid),
                  "bench (enrolled events, Task polls)": time.process_time()}
    print(f"eras serve, SQLite: {args.rate} events/s for {args.seconds:.0f} s, mix "
          + ", ".join(f"{kind} {share:.0%}" for kind, share in MIX) + f"; load {load()}")
    start = time.perf_counter()
    watcher = asyncio.create_task(watch(served, start, feed, done_before))
    await feed.run(args.rate, args.seconds, MIX)
    offered = sum(feed.sent.values()) / feed.seconds  # a starved sender offers less
    cpu = {"eras serve": cpu_seconds(served.pid), "fhir sandbox": cpu_seconds(sandbox_pid),
           "bench (enrolled events, Task polls)": time.process_time()}
    cpu = {name: cpu[name] - cpu_before[name] for name in cpu} | {
        "sender process": feed.sender.cpu_seconds if feed.sender else 0.0}
    counts = await served.inbox()
    backlog_at_end = counts.get("pending", 0) + counts.get("processing", 0)
    done_at_end = counts.get("done", 0) - done_before
    waits = await asyncio.gather(*feed.latencies, return_exceptions=True)
    watcher.cancel()
    sent = sum(feed.sent.values())
    print(f"  sent {sent} ({', '.join(f'{k} {n}' for k, n in feed.sent.items())}) in {feed.seconds:.1f} s; "
          f"when sending ended: {done_at_end} done, backlog {backlog_at_end} -> "
          f"{'kept up' if done_at_end >= sent - 2 * offered else 'behind'} (offered {offered:.0f} events/s; "
          f"kept up: all done but two seconds' worth); load {load()}")
    print("  CPU while sending (share of one core): " + ", ".join(
        f"{name} {seconds:.1f} s ({seconds / feed.seconds:.0%})" for name, seconds in cpu.items()))
    report_latency([w for w in waits if isinstance(w, float)], len(waits))
    left = await bench.drained(args.drain_seconds)
    counts = await served.inbox()
    serve_cpu = cpu_seconds(served.pid) - cpu_before["eras serve"]
    print(f"  after the drain: {counts.get('done', 0) - done_before} done of {sent} sent, "
          f"{counts.get('failed', 0)} failed, {left} left; serve CPU {serve_cpu:.0f} s "
          f"over {time.perf_counter() - start:.0f} s")
    await irrelevant_cost(served, feed, args)
    print(f"  peak RSS MiB: eras serve {peak_rss_mib(served.pid):.0f}")


def load() -> str:
    """The machine's load averages over 1, 5 and 15 minutes (other work shares the cores)."""
    return "/".join(Path("/proc/loadavg").read_text().split()[:3])


def report_latency(latencies: list[float], events: int) -> None:
    if len(latencies) < 2:
        print(f"  enrolled events: {len(latencies)} of {events} reached their Task")
        return
    q = statistics.quantiles(latencies, n=20)
    print(f"  enrolled patients' notification -> Task: p50 {statistics.median(latencies):.2f} s, "
          f"p95 {q[18]:.2f} s (goal p95 <= 2 s; Task polled every 0.25 s); "
          f"{len(latencies)} of {events} events reached their Task within 120 s")


async def irrelevant_cost(served: Served, feed: Feed, args: argparse.Namespace) -> None:
    """Only irrelevant events for a while: the serve process's CPU per event, intake included."""
    seconds = min(10.0, args.seconds)
    only = (("observation", 0.65), ("adt", 0.35))
    before_done, before_cpu = (await served.inbox()).get("done", 0), cpu_seconds(served.pid)
    before_trips = await served.trips()
    await feed.run(args.rate, seconds, only)
    await feed.bench.drained(args.drain_seconds)
    events = (await served.inbox()).get("done", 0) - before_done
    cpu = cpu_seconds(served.pid) - before_cpu
    trips = await served.trips() - before_trips
    sender = feed.sender.cpu_seconds if feed.sender else 0.0
    print(f"  irrelevant only, {args.rate} events/s for {seconds:.0f} s: {events} done, serve CPU "
          f"{cpu / max(events, 1) * 1000:.1f} ms per irrelevant event (HTTP intake + drain; the "
          f"sender's {sender / max(events, 1) * 1000:.1f} ms apart); {trips} FHIR requests by the engine")


async def main_async(args: argparse.Namespace) -> None:
    with FhirSandbox() as sandbox:
        async with serving(sandbox) as served:
            await hospital(served, sandbox._process.pid if sandbox._process is not None else 0, args)
            if sandbox._process is not None:
                print(f"  peak RSS MiB: fhir sandbox {peak_rss_mib(sandbox._process.pid):.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--drain-seconds", type=float, default=120)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
