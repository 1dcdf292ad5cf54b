"""CDS Hooks `patient-view` p50/p95 against a 500 ms budget, with prefetch and with FHIR reads.

A real `uvicorn` server (the whole API, SQLite store) answers hook calls signed as the EHR signs
them; the sandbox FHIR server is the EHR. 100 enrolled patients, each with open tasks and element
results; calls go one at a time, as an EHR opening charts would. Prints the figures, the card
kinds (a degraded card means the EHR read outlasted the hook's budget) and the peak RSS of this
process, which runs the server, the client and the JWKS endpoint.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from api.cds.cards import card_kind
from api.main import create_app
from engine.loader import PATHWAYS_DIR, load_pathway
from fhir_adapters.jwks import PrivateKey, generate_key
from fhir_adapters.sandbox import FhirSandbox
from flows.settings import Settings
from store.db import make_engine
from tests.utils.cds import (
    CLIENT,
    ISSUER,
    auth,
    hook_body,
    new_patient_id,
    put_patient,
    seed_status,
    serve_jwks,
    sign_with,
)
from tests.utils.loopback import serve

PATIENTS, CALLS, BUDGET_MS = 100, 300, 500


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def _run(client: httpx.Client, base: str, key: PrivateKey, patients: list[str], *, prefetch: bool,
         ehr: str) -> tuple[list[float], Counter[str]]:
    times, kinds = [], Counter[str]()
    path = "/cds-services/patient-view"
    for i in range(CALLS):
        pid = patients[i % len(patients)]
        body = hook_body("patient-view", pid, fhir_server=None if prefetch else ehr,
                         prefetch={"patient": {"resourceType": "Patient", "id": pid}} if prefetch else None)
        headers = auth(sign_with(key, base + path))
        start = time.perf_counter()
        response = client.post(path, json=body, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        kinds.update(card_kind(card) for card in response.json()["cards"])
    return times, kinds


def main() -> None:
    key = generate_key("ES384")
    with tempfile.TemporaryDirectory() as tmp, FhirSandbox() as sandbox, serve_jwks(key) as jwks_url:
        url = f"sqlite:///{Path(tmp) / 'cds.db'}"
        settings = Settings(database_url=url, fhir={"base_url": sandbox.base_url},  # type: ignore[arg-type]
                            worklist={"dev_mode": True}, cds={"issuer": ISSUER, "jwks_url": jwks_url,
                                                              "client_id": CLIENT})
        pathway = load_pathway(PATHWAYS_DIR / "lumbar_fusion.yaml")
        with serve(create_app(settings, pathways={pathway.id: pathway})) as base:
            engine = make_engine(url)
            patients = [new_patient_id() for _ in range(PATIENTS)]
            for pid in patients:
                put_patient(sandbox.base_url, {"resourceType": "Patient", "id": pid})
                seed_status(engine, pid)
            with httpx.Client(base_url=base, timeout=10) as client:
                _run(client, base, key, patients[:10], prefetch=True, ehr=sandbox.base_url)  # warm-up
                for prefetch in (True, False):
                    times, kinds = _run(client, base, key, patients, prefetch=prefetch, ehr=sandbox.base_url)
                    p50, p95 = statistics.median(times), _percentile(times, 95)
                    within = sum(1 for t in times if t <= BUDGET_MS) / len(times)
                    label = "with prefetch" if prefetch else "FHIR reads   "
                    print(f"patient-view {label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                          f"max {max(times):.1f} ms "
                          f"over {CALLS} calls; {within:.0%} within {BUDGET_MS} ms "
                          f"({'met' if p95 <= BUDGET_MS else 'NOT met'}); cards {dict(kinds)}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB (server, client and JWKS endpoint in this one process)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
