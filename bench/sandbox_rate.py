"""Measure the FHIR sandbox's own rate: 8-Task transaction bundles per second, one client.

Run: .venv/bin/python bench/sandbox_rate.py [--seconds 5] [--no-validate]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from fhir_adapters.sandbox import FhirSandbox

TASKS_PER_BUNDLE = 8
SYSTEM = "urn:bench:task"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-validate", action="store_true")
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

        for target in (800, 3200):
            sandbox.reset()
            while _stored_tasks(client) < target:
                client.post("", json=_create_bundle(conditional=False)).raise_for_status()
            rate = _rate(client, lambda: _create_bundle(conditional=True), min(args.seconds, 3))
            print(f"conditional creates:{rate:7.0f} transactions/s  (from {target} Tasks)")


if __name__ == "__main__":
    main()
