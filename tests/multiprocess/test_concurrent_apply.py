"""Two processes apply one patient at the same instant (a file barrier releases both), three
times, each time after a new pain score: the applies must serialise — both succeed, and the
EHR ends with exactly one Task per identifier, including each new reassessment."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from tests.multiprocess.processes import Fleet, Proc
from tests.utils import ehr
from tests.utils.databases import postgres_schema

pytestmark = pytest.mark.multiprocess
ROUNDS = 3


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.02)


def at_barrier(directory: Path, round_: int, procs: list[Proc]) -> Callable[[], bool]:
    """Every process waits at the barrier of this round (or has exited: its log says why)."""
    return lambda: all((directory / f"ready-{round_}-{p.name}").exists() or not p.alive for p in procs)


async def test_two_processes_applying_one_patient_serialise(fhir_sandbox: FhirSandbox,
                                                             tmp_path: Path) -> None:
    pid = f"cc-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    start = datetime.now(UTC) - timedelta(hours=6)
    async with FhirClient(fhir_sandbox.base_url) as client:
        await client.transaction(ehr.transaction(
            ehr.patient(pid), ehr.booking(pid, start, start - timedelta(days=30)),
            ehr.stay(pid, start - timedelta(hours=2)), ehr.surgery(pid, start, start + timedelta(hours=3))))
        with postgres_schema() as store:
            env = {**os.environ, "ERAS_DATABASE_URL": store, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
                   "ERAS_LOG_LEVEL": "WARNING"}
            fleet = Fleet(tmp_path)
            procs = [fleet.spawn(name, [sys.executable, "-m", "tests.multiprocess.apply_at", pid,
                                        str(tmp_path), name, str(ROUNDS)], env) for name in ("a", "b")]
            try:
                for r in range(ROUNDS):
                    if r:  # a new NRS 7: both applies plan the same new reassessment Task
                        await client.create(ehr.pain(pid, datetime.now(UTC), 7))
                    wait(at_barrier(tmp_path, r, procs), 120, f"both processes at round {r}")
                    (tmp_path / f"go-{r}").touch()
                for p in procs:
                    assert p.popen is not None
                    p.popen.wait(timeout=120)
            finally:
                fleet.stop_all()
        tasks = await client.search("Task", {"patient": f"Patient/{pid}", "_count": "1000"})
    failed = {p.name: [line for line in p.tail(200).splitlines() if "Error" in line][-1:]
              for p in procs if p.popen is None or p.popen.returncode != 0}
    assert not failed, failed
    keys = Counter(i["value"] for t in tasks for i in t.get("identifier", []))
    assert keys and max(keys.values()) == 1
    reassessments = [k for k in keys if ":pain_reassessment_within_1h:" in k]
    assert len(reassessments) == ROUNDS - 1  # one per new pain score, NRS 7 >= 4
