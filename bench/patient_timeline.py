"""The patient view's cost: GET /patients/{id}/pathway and the SVG fragment, p50/p95, SQLite.

One hand-worked lumbar episode (56 elements, seen on POD1; tests/api/test_patient_pathway.py) in
a store of `OTHERS` more episodes, through the whole app in-process (httpx ASGI transport, dev
token): what a tap on a worklist patient costs the server, without the network.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from store.db import make_engine
from store.migrate import upgrade
from tests.api.conftest import api_app
from tests.api.test_patient_pathway import NOW, PID, WARD, hand_worked
from tests.audit.cohort import LONDON, lumbar
from tests.utils.audit import load_cases

OTHERS, RUNS = 200, 50


async def _timed(api: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[float]:
    took = []
    for _ in range(RUNS):
        start = time.perf_counter()
        response = await api.get(path, headers=headers)
        took.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return took


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(make_engine(url))
        cases = [hand_worked(PID, WARD).case(now=NOW)]
        cases += [hand_worked(f"B{i:04d}", f"W{i % 20}").case(now=NOW) for i in range(OTHERS)]
        load_cases(make_engine(url), lumbar(), cases, tz=LONDON)
        app = api_app(url, timezone="Europe/London")
        async with app.router.lifespan_context(app):
            app.state.clock = lambda: NOW
            token = app.state.worklist.dev_issuer.issue("bench", ("nurse",), (WARD,))
            headers = {"Authorization": f"Bearer {token}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                for path in (f"/patients/{PID}/pathway", f"/patients/{PID}/pathway?evidence=true",
                             f"/ui/patients/{PID}/timeline"):
                    took = sorted(await _timed(api, path, headers))
                    p95 = took[int(len(took) * 0.95) - 1]
                    print(f"{path}: p50 {statistics.median(took) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
                          f"({RUNS} requests, {OTHERS + 1} episodes stored)")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
