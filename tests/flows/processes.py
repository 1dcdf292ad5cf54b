"""A separate OS process for the concurrency tests: `python -m tests.flows.processes '<json>'`, or
`child` in a process forked from a forkserver that imported this module (tests/flows/test_concurrency.py).

It builds its own Runtime (own database engine, own FHIR client) and runs one apply or one
reminders run, starting together with the other processes of the test (ready files, one go file). Prints
one JSON line with what it did.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from fhir_adapters.client import FhirClient
from flows.apply import apply_patient
from flows.delivery import delivering, load_routing
from flows.reminders import remind_once
from flows.runtime import Runtime, WriteTarget
from store.db import make_engine
from tests.utils.pathways import LONDON, lumbar


def _slow_first_read(client: FhirClient, delay: float) -> None:
    """Hold this process's first read for `delay` s: it widens the window a second writer needs."""
    read = client.batch
    calls = [0]

    async def slow(bundle: Any) -> Any:
        response = await read(bundle)
        calls[0] += 1
        if calls[0] == 1:
            await asyncio.sleep(delay)
        return response

    client.batch = slow  # type: ignore[method-assign]


def _record_critical_sections(spans: list[list[float]]) -> None:
    """Note when this process is inside apply's locked section (flows.apply._apply)."""
    import flows.apply

    inner = flows.apply._apply

    async def timed(*args: Any) -> Any:
        spans.append([time.time()])
        try:
            return await inner(*args)
        finally:
            spans[-1].append(time.time())

    flows.apply._apply = timed  # type: ignore[assignment]


async def _with_fact(ehr: FhirClient, fact: dict[str, Any] | None) -> None:
    if fact is not None:
        await ehr.create(fact)


async def _start_together(args: dict[str, Any]) -> None:
    """Say ready (a file), wait for the test's go file, then wait this process's offset."""
    if "ready" not in args:
        return
    Path(args["ready"]).touch()
    while not Path(args["go"]).exists():
        await asyncio.sleep(0.005)
    await asyncio.sleep(args.get("offset", 0.0))


async def main(args: dict[str, Any]) -> dict[str, Any]:
    db = make_engine(args["db_url"])
    now = datetime.fromisoformat(args["now"])
    try:
        async with FhirClient(args["fhir_url"]) as ehr:
            rt = Runtime(pathways={"lumbar_fusion": lumbar()}, ehr=ehr, tasks=ehr,
                         target=WriteTarget.EHR, db=db, tz=LONDON, clock=lambda: now)
            await _start_together(args)
            if args["job"] == "apply":
                await _with_fact(ehr, args.get("fact"))
                _slow_first_read(ehr, args.get("read_delay", 0.0))
                spans: list[list[float]] = []
                _record_critical_sections(spans)
                await apply_patient(rt, args["patient_id"], now=now)
                return {"spans": spans}
            if args.get("crash_after_send"):
                import flows.reminders

                # Dies after delivering, before recording: the crash the idempotency key is for.
                flows.reminders.mark_sent = lambda **_: os._exit(3)  # type: ignore[assignment]
            deliver = delivering(load_routing(Path(args["routes"]), ehr=ehr), db, lambda: now)
            sent = await remind_once(rt, now=now, deliver=deliver, worker=args["worker"])
            return {"sent": [n.idempotency_key for n in sent]}
    finally:
        db.dispose()


def child(args: dict[str, Any], env: dict[str, str], cwd: str, result: Connection) -> None:
    """What `__main__` does, in a forked process: the test's environment and working directory
    (a forkserver keeps its own), then main()'s result, or the traceback, sent back on `result`.
    The crash case exits (3) without sending anything, as the command line one does."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        result.send(("ok", asyncio.run(main(args))))
    except BaseException:
        result.send(("error", traceback.format_exc()))
        raise SystemExit(1) from None


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
