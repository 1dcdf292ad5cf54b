"""On PostgreSQL an event stored by another process wakes the drain loop (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from flows.loops import Loops
from flows.runtime import Runtime, WriteTarget
from store.db import make_engine, session_scope
from store.models import InboxEvent
from store.wakeup import listen_url
from tests.flows.conftest import LONDON, lumbar
from tests.utils.databases import postgres_schema

ROOT = Path(__file__).resolve().parents[2]

# Another process takes a notification in the way the API does, then prints when it committed.
INTAKE = textwrap.dedent("""
    import json, sys, time
    from datetime import UTC, datetime
    from api.intake.batcher import take_in_many
    from fhir_adapters.notifications import parse_notification
    from store.db import make_engine
    from tests.utils.notifications import observation

    body = json.dumps(observation(patient="pt-wake")).encode()
    notification = parse_notification(body, subscription_id="sub-a", received_at=datetime.now(UTC),
                                      content_type="application/fhir+json")
    engine = make_engine(sys.argv[1])
    engine.connect().close()  # the pool's connection is open: time the intake, not the login
    began = time.time()
    take_in_many(engine, [(notification, datetime.now(UTC))])
    print(began, time.time())
""")


async def _claimed_at(rt: Runtime, seconds: float) -> datetime | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with session_scope(rt.db) as session:
            claimed = [e.claimed_at for e in session.exec(select(InboxEvent)) if e.claimed_at]
        if claimed:
            return claimed[0]
        await asyncio.sleep(0.01)
    return None


async def test_event_stored_by_another_process_wakes_the_drain(fhir_sandbox: FhirSandbox) -> None:
    with postgres_schema() as url:
        engine = make_engine(url)
        async with FhirClient(fhir_sandbox.base_url) as ehr:
            rt = Runtime(pathways={"lumbar_fusion": lumbar()}, ehr=ehr, tasks=ehr,
                         target=WriteTarget.EHR, db=engine, tz=LONDON)
            # The safety-net poll is a minute away: only the NOTIFY can wake the loop in time.
            loops = Loops(rt, worker="test-wake", drain_interval=60.0, listen_url=listen_url(url))
            loops.start()
            try:
                await asyncio.wait_for(loops.listening.wait(), 10)
                await asyncio.sleep(0.5)  # the drain's first (empty) pass is over
                intake = await asyncio.to_thread(
                    subprocess.run, [sys.executable, "-c", INTAKE, url], cwd=ROOT,
                    capture_output=True, text=True, timeout=60, check=True)
                began, returned = map(float, intake.stdout.split()[-2:])
                claimed = await _claimed_at(rt, 15)
            finally:
                await loops.stop()
                engine.dispose()
    assert claimed is not None, "the drain did not wake within 15 s of the commit"
    # The commit happens inside the intake call: the wake-up latency is at most claimed - began.
    within_ms = (claimed - datetime.fromtimestamp(began, UTC)).total_seconds() * 1000
    print(f"\nintake call in another process ({(returned - began) * 1000:.1f} ms, commit included)"
          f" -> drain claimed the event {within_ms:.1f} ms after the call began")
