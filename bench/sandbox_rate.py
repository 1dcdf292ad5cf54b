"""Measure the FHIR sandbox's own rate: 8-Task transaction bundles per second, one client;
then the indexed searches: patient-scoped Observation searches with a 400-token code list
(100 patients x 40 Observations stored) and conditional creates with 4,000 Tasks stored.

Run: .venv/bin/python bench/sandbox_rate.py [--seconds 5] [--no-validate] [--searches 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from fhir_adapters.sandbox import FhirSandbox

TASKS_PER_BUNDLE = 8
SYSTEM = "urn:bench:task"
LOINC = "http://loinc.org"
PATIENTS = 100
OBSERVATIONS_PER_PATIENT = 40
CODES_PER_SEARCH = 400


def _task(value: str, task_id: str | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": SYSTEM, "value": value}],
        "status": "ready",
        "intent": "order",
        "for": {"reference": "Patient/bench"},
    }
    return task | {"id": task_id} if task_id else task


def _create_bundle(conditional: bool) -> dict[str, Any]:
    entries = []
    for _ in range(TASKS_PER_BUNDLE):
        value = str(uuid.uuid4())
        request = {"method": "POST", "url": "Task"}
        if conditional:
            request["ifNoneExist"] = f"identifier={SYSTEM}|{value}"
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": _task(value), "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _put_bundle(ids: list[str]) -> dict[str, Any]:
    entries = [
        {"resource": _task(task_id, task_id), "request": {"method": "PUT", "url": f"Task/{task_id}"}}
        for task_id in ids
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _rate(client: httpx.Client, make: Callable[[], dict[str, Any]], seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        response = client.post("", json=make())
        response.raise_for_status()
        done += 1
    return done / (time.perf_counter() - started)


def _stored_tasks(client: httpx.Client) -> int:
    return int(client.get("Task", params={"_summary": "count"}).json()["total"])


def _observation_bundle(patient: str, rng: random.Random) -> dict[str, Any]:
    entries = [
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": f"{rng.randrange(1000)}-0"}]},
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": f"2024-03-{rng.randint(1, 28):02d}",
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for _ in range(OBSERVATIONS_PER_PATIENT)
    ]
    patient_entry = {"resourceType": "Patient", "id": patient}
    entries.append({"resource": patient_entry, "request": {"method": "PUT", "url": f"Patient/{patient}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _percentiles(timings: list[float]) -> str:
    cuts = statistics.quantiles(timings, n=100)
    return f"p50 {cuts[49]:5.1f} ms  p95 {cuts[94]:5.1f} ms"


def _patient_search_latency(client: httpx.Client, searches: int) -> None:
    rng = random.Random(7)
    for i in range(PATIENTS):
        client.post("", json=_observation_bundle(f"p{i}", rng)).raise_for_status()
    stored = client.get("Observation", params={"_summary": "count"}).json()["total"]
    codes = ",".join(f"{LOINC}|{code}-0" for code in rng.sample(range(1000), CODES_PER_SEARCH))
    for i in range(20):  # warm-up (JIT), not timed
        client.get("Observation", params={"patient": f"Patient/p{i}", "code": codes}).raise_for_status()
    round_trips, in_server, matched, examined = [], [], 0, 0
    for _ in range(searches):
        params = {"patient": f"Patient/p{rng.randrange(PATIENTS)}", "code": codes}
        started = time.perf_counter()
        response = client.get("Observation", params=params)
        round_trips.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        matched += response.json()["total"]
        stats = {p["name"]: p for p in client.get("$stats").json()["parameter"]}
        in_server.append(float(stats["milliseconds"]["valueDecimal"]))
        examined += int(stats["examined"]["valueInteger"])
    label = f"Observation?patient=&code=<{CODES_PER_SEARCH} tokens>"
    print(f"{label}: in server  {_percentiles(in_server)}")
    print(f"{label}: round trip {_percentiles(round_trips)}")
    print(
        f"  ({stored} Observations of {PATIENTS} patients; per search {examined / searches:.0f} examined,"
        f" {matched / searches:.1f} matched)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--searches", type=int, default=300, help="patient-scoped searches to time")
    args = parser.parse_args()

    with (
        FhirSandbox(validate=not args.no_validate) as sandbox,
        httpx.Client(base_url=sandbox.base_url, timeout=30) as client,
    ):
        creates = _rate(client, lambda: _create_bundle(conditional=False), args.seconds)
        print(f"plain creates:      {creates:7.0f} transactions/s  ({_stored_tasks(client)} Tasks)")
        ids = [str(uuid.uuid4()) for _ in range(TASKS_PER_BUNDLE)]
        puts = _rate(client, lambda: _put_bundle(ids), args.seconds)
        print(f"PUT by id:          {puts:7.0f} transactions/s")

        for target in (800, 4000):
            sandbox.reset()
            while _stored_tasks(client) < target:
                client.post("", json=_create_bundle(conditional=False)).raise_for_status()
            rate = _rate(client, lambda: _create_bundle(conditional=True), min(args.seconds, 3))
            print(f"conditional creates:{rate:7.0f} transactions/s  (from {target} Tasks)")

        sandbox.reset()
        _patient_search_latency(client, args.searches)


if __name__ == "__main__":
    main()
