"""Twenty nurses acting at once, while the EHR notifies: no error, every action applied, every
event stored, /healthz answering.

The actions' store work runs in worker threads and no transaction is held across the EHR call,
so on SQLite (one writer) the requests neither lock each other out nor stall the event loop.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import httpx
from sqlmodel import Session, select

from fhir_adapters.sandbox import FhirSandbox
from store.models import InboxEvent, PlannedActionRow
from tests.api.conftest import CREDENTIALS, api_app
from tests.api.worklist.conftest import bearer
from tests.utils.loopback import serve
from tests.utils.notifications import backport_bundle, clear_intake_tables, observation
from tests.utils.worklist import clear_ward, create_task, seed_action, seed_enrolment

ACTIONS = 20


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


async def _health_until(base: str, done: asyncio.Event) -> list[tuple[int, float]]:
    answers: list[tuple[int, float]] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while not done.is_set():
            started = time.perf_counter()
            status = (await http.get("/healthz")).status_code
            answers.append((status, time.perf_counter() - started))
            await asyncio.sleep(0.02)
    return answers


async def _notify(http: httpx.AsyncClient, number: int) -> httpx.Response:
    bundle = backport_bundle("sub-a", events=[(number, observation(patient=f"p{number}"))],
                             events_since_start=number)
    return await http.post("/fhir/notifications/sub-a", json=bundle,
                           headers={"Authorization": f"Bearer {CREDENTIALS['sub-a']}"})


async def test_twenty_concurrent_worklist_actions_all_apply_and_health_answers(
    db_url: str, fhir_sandbox: FhirSandbox
) -> None:
    app = api_app(db_url, fhir={"base_url": fhir_sandbox.base_url})
    with serve(app) as base:
        ward = f"W{uuid.uuid4().hex[:6]}"
        enrolments, actions = [], []
        for _ in range(ACTIONS):
            pid = f"pt-{uuid.uuid4().hex[:10]}"
            enrolment = seed_enrolment(app.state.engine, ward=ward, patient_id=pid)
            task = create_task(fhir_sandbox.base_url, pid)
            enrolments.append(enrolment.id)
            actions.append(seed_action(app.state.engine, enrolment, "urinary_catheter_removal",
                                       due=datetime.now(UTC), fhir_id=task["id"],
                                       fhir_version=task["meta"]["versionId"]))
        user = str(app.state.worklist.dev_issuer.issue("nurse.a", ("nurse",), (ward,)))
        try:
            done = asyncio.Event()
            health = asyncio.create_task(_health_until(base, done))
            clear_intake_tables(app.state.engine)
            async with httpx.AsyncClient(base_url=base, timeout=60, headers=bearer(user)) as http:
                started = time.perf_counter()
                answers, notified = await asyncio.gather(
                    asyncio.gather(*(
                        http.post(f"/worklist/{a.key}/complete", json={}) if i % 2 == 0 else
                        http.post(f"/worklist/{a.key}/decline", json={"reason": "patient-refused"})
                        for i, a in enumerate(actions))),
                    asyncio.gather(*(_notify(http, number) for number in range(1, ACTIONS + 1))))
                elapsed = time.perf_counter() - started
            done.set()
            probes = await health
            assert [r.status_code for r in answers] == [200] * ACTIONS, [r.text for r in answers]
            assert [r.status_code for r in notified] == [200] * ACTIONS, [r.text for r in notified]
            with Session(app.state.engine) as session:
                assert len(session.exec(select(InboxEvent)).all()) == ACTIONS
            assert probes and all(status == 200 for status, _ in probes)
            with Session(app.state.engine) as session:
                statuses = [session.get(PlannedActionRow, a.key).status for a in actions]  # type: ignore[union-attr]
            assert statuses == ["done" if i % 2 == 0 else "declined" for i in range(ACTIONS)]
            p95 = _p95([seconds for _, seconds in probes]) * 1000
            backend = db_url.split(":")[0]
            print(f"\n{ACTIONS} worklist actions + {ACTIONS} notifications at once on {backend}: "
                  f"all applied in {elapsed:.2f} s; /healthz {len(probes)} probes, p95 {p95:.0f} ms")
        finally:
            clear_ward(app.state.engine, enrolments)
            clear_intake_tables(app.state.engine)
