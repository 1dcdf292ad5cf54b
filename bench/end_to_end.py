"""Notification → Task visible on the FHIR server, through `eras serve` (SQLite, one process).

Each event is a new pain score NRS 7 for an admitted patient: the engine must read the record,
evaluate, and write a reassessment Task. Prints p50/p95 latency at a steady 5 events/s, then
steps the rate up (10, 20, 30, 50, 70 events/s, 15 s each) and reports the highest rate the
inbox keeps up with (backlog not growing), with FHIR round trips per event.
Run: .venv/bin/python bench/end_to_end.py [--steady-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.demo.__main__ import free_port  # noqa: E402
from fhir_adapters.client import FhirClient  # noqa: E402
from fhir_adapters.sandbox import FhirSandbox  # noqa: E402
from flows.runtime import DEFAULT_IDENTIFIER_SYSTEM  # noqa: E402
from tests.utils import ehr  # noqa: E402

SECRET = "bench-secret"
PATIENTS = 40


async def seed(client: FhirClient, now: datetime) -> list[str]:
    pids = [f"e2e-{i}" for i in range(PATIENTS)]
    start = now - timedelta(hours=6)
    for pid in pids:
        await client.transaction(ehr.transaction(
            ehr.patient(pid), ehr.booking(pid, start, start - timedelta(days=30)),
            ehr.stay(pid, start - timedelta(hours=2)), ehr.surgery(pid, start, start + timedelta(hours=3))))
    return pids


class Bench:
    def __init__(self, api: str, ehr_client: FhirClient, http: httpx.AsyncClient, token: str) -> None:
        self.api, self.ehr, self.http, self.token = api, ehr_client, http, token
        self.sent = 0
        self.enrolment: dict[str, str] = {}  # patient -> enrolment id, the prefix of Task keys

    async def learn_enrolments(self, pids: list[str]) -> None:
        for pid in pids:
            tasks = await self.ehr.search("Task", {"patient": f"Patient/{pid}", "_count": "1"})
            self.enrolment[pid] = tasks[0]["identifier"][0]["value"].split(":", 1)[0]

    async def event(self, pid: str) -> float:
        """Write an NRS 7, notify, and wait until its reassessment Task is on the server."""
        obs = await self.ehr.create(ehr.pain(pid, datetime.now(UTC), 7))
        t0 = time.perf_counter()
        response = await self.http.post(f"{self.api}/fhir/notifications/bench", json=obs,
                                        headers={"Authorization": f"Bearer {SECRET}"})
        response.raise_for_status()
        self.sent += 1
        # The Task's business identifier is known in advance: poll for exactly it (indexed).
        key = f"{self.enrolment[pid]}:pain_reassessment_within_1h:t:Observation/{obs['id']}"
        query = {"identifier": f"{DEFAULT_IDENTIFIER_SYSTEM}|{key}"}
        while not await self.ehr.search("Task", query):
            await asyncio.sleep(0.1)
        return time.perf_counter() - t0

    async def drained(self, seconds: float = 300) -> None:
        for _ in range(int(seconds * 10)):
            inbox = (await self.status())["inbox"]
            if not inbox.get("pending") and not inbox.get("processing"):
                return
            await asyncio.sleep(0.1)

    async def backlog(self) -> int:
        inbox = (await self.status())["inbox"]
        return int(inbox.get("pending", 0)) + int(inbox.get("processing", 0))

    async def status(self) -> dict:  # type: ignore[type-arg]
        r = await self.http.get(f"{self.api}/runtime/status",
                                headers={"Authorization": f"Bearer {self.token}"})
        return r.json()  # type: ignore[no-any-return]


async def steady(bench: Bench, pids: list[str], rate: float, seconds: float) -> list[float]:
    tasks = []
    for k in range(int(rate * seconds)):
        tasks.append(asyncio.create_task(bench.event(pids[k % len(pids)])))
        await asyncio.sleep(1 / rate)
    return list(await asyncio.gather(*tasks))


async def stage(bench: Bench, pids: list[str], rate: float, seconds: float) -> tuple[int, int, int]:
    """Fire-and-forget notifications at `rate`; returns (sent, backlog half-way, backlog at end)."""
    async def one(k: int) -> None:
        pid = pids[k % len(pids)]
        obs = await bench.ehr.create(ehr.pain(pid, datetime.now(UTC), 7))
        await bench.http.post(f"{bench.api}/fhir/notifications/bench", json=obs,
                              headers={"Authorization": f"Bearer {SECRET}"})
    sent = []
    half = 0
    total = int(rate * seconds)
    started = time.perf_counter()
    for k in range(total):
        sent.append(asyncio.create_task(one(k)))
        if k == total // 2:
            half = await bench.backlog()
        # Paced against the clock, so a slow send does not lower the offered rate.
        await asyncio.sleep(max(0.0, started + (k + 1) / rate - time.perf_counter()))
    await asyncio.gather(*sent)
    return len(sent), half, await bench.backlog()


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, FhirSandbox() as sandbox:
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        env = {**os.environ, "ERAS_DATABASE_URL": f"sqlite:///{tmp}/e2e.db",
               "ERAS_FHIR_BASE_URL": sandbox.base_url, "ERAS_SUBSCRIPTIONS": json.dumps({"bench": SECRET}),
               "ERAS_WORKLIST_DEV_MODE": "true", "ERAS_LOG_LEVEL": "ERROR"}
        serve = subprocess.Popen([sys.executable, "-m", "eras_cli.main", "serve", "--port", str(port),
                                  "--no-prefect", "--tick-seconds", "3600"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "serve.log", "wb"))  # noqa: SIM115
        try:
            async with httpx.AsyncClient(timeout=60) as http, FhirClient(sandbox.base_url) as client:
                for _ in range(300):
                    try:
                        if (await http.get(f"{api}/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                token = (await http.post(f"{api}/auth/dev-token", json={
                    "subject": "bench", "roles": ["admin"], "wards": []})).json()["access_token"]
                pids = await seed(client, datetime.now(UTC))
                bench = Bench(api, client, http, token)
                await stage(bench, pids, 8, 5)  # warm-up: enrolments and first plans (38 Tasks each)
                await bench.drained()
                await bench.learn_enrolments(pids)
                before = (await bench.status())["fhir_round_trips"]
                latencies = await steady(bench, pids, 5, args.steady_seconds)
                after = (await bench.status())["fhir_round_trips"]
                q = statistics.quantiles(latencies, n=20)
                print(f"steady 5 events/s for {args.steady_seconds:.0f} s: notification -> Task visible "
                      f"p50 {statistics.median(latencies):.2f} s, p95 {q[18]:.2f} s "
                      f"(goal p95 <= 2 s); FHIR round trips/event {(after - before) / len(latencies):.2f}")
                best = 0.0
                for rate in (10, 20, 30, 50, 70):
                    sent, half, end = await stage(bench, pids, rate, args.stage_seconds)
                    # Sustained: the backlog does not grow over the second half of the stage
                    # (a batch in progress may hold a few seconds' worth).
                    kept_up = end <= max(half, 0) + rate
                    print(f"  {rate:>3} events/s for {args.stage_seconds:.0f} s: {sent} sent, backlog "
                          f"{half} half-way, {end} at end -> {'kept up' if kept_up else 'growing'}")
                    if not kept_up:
                        break
                    best = rate
                    await bench.drained()
                print(f"highest sustained rate: {best} events/s (goal >= 50 on this 2-core machine)")
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(timeout=30)
            log = (Path(tmp) / "serve.log").read_text(errors="replace").strip().splitlines()
            if log:
                print("serve log (last lines):", *log[-8:], sep="\n  ")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steady-seconds", type=float, default=30)
    ap.add_argument("--stage-seconds", type=float, default=15)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
