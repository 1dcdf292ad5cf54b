"""`eras serve` (API + runtime in one process) and `eras worker` (runtime against a Prefect server)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from api.config import Settings
from api.main import create_app
from api.worklist_settings import WorklistSettings
from eras_cli.patient_cmds import settings as runtime_settings
from flows.config import open_runtime
from flows.loops import Loops

console = Console()


async def _scheduled(job: str) -> object:
    """tick and reminders as Prefect flow runs (in-process Prefect when no server is set)."""
    from flows.prefect_flows import reminders, tick

    return await (tick() if job == "tick" else reminders())


def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    poll_seconds: Annotated[float, typer.Option(help="poll the EHR every N s; 0 = no polling")] = 0,
    tick_seconds: Annotated[float, typer.Option(help="tick and reminders interval")] = 60,
    prefect: Annotated[bool, typer.Option(help="run tick/reminders as Prefect flow runs")] = True,
) -> None:
    """Run the API and the runtime (drain, tick, reminders, polling) in one process."""
    logging.basicConfig(level=os.environ.get("ERAS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(host, port, poll_seconds or None, tick_seconds, prefect))


async def _serve(host: str, port: int, poll: float | None, tick: float, prefect: bool) -> None:
    async with open_runtime(runtime_settings()) as rt:
        loops = Loops(rt, worker=f"serve:{socket.gethostname()}:{os.getpid()}", poll_interval=poll,
                      tick_interval=tick, scheduled=_scheduled if prefect else None)
        worklist = WorklistSettings()
        if worklist.fhir_base_url is None and rt.tasks is not None:
            worklist = worklist.model_copy(update={"fhir_base_url": rt.tasks.base_url})
        app = create_app(Settings(), worklist=worklist, pathways=rt.pathways)
        app.state.on_event_stored = loops.wake
        app.state.runtime = rt
        app.state.clock = rt.clock
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        loops.start()
        console.print(f"eras serve: API on http://{host}:{port}, runtime running "
                      f"(target {rt.target.value}, pathways {', '.join(rt.pathways)})")
        try:
            await server.serve()
        finally:
            await loops.stop()


def worker(
    poll_seconds: Annotated[float, typer.Option(help="poll the EHR every N s; 0 = no polling")] = 0,
) -> None:
    """Run the drain loop here and serve the scheduled deployments (tick, reminders, polling,
    process-events as a safety net) to the Prefect server in PREFECT_API_URL."""
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[red]eras worker needs PREFECT_API_URL[/red] (the Prefect server to serve "
                      "deployments to); for one process on one machine use `eras serve`.")
        raise typer.Exit(2)
    logging.basicConfig(level=os.environ.get("ERAS_LOG_LEVEL", "INFO"))
    asyncio.run(_worker(poll_seconds or None))


async def _worker(poll: float | None) -> None:
    from prefect.runner import Runner

    from flows.prefect_flows import poll_ehr, process_events, reminders, tick

    runner = Runner(name=f"eras-worker-{socket.gethostname()}")
    await runner.aadd_flow(process_events, name="process-events", interval=30)
    await runner.aadd_flow(tick, name="tick", cron="* * * * *")
    await runner.aadd_flow(reminders, name="reminders", cron="* * * * *")
    if poll:
        await runner.aadd_flow(poll_ehr, name="poll-ehr", interval=poll)
    async with open_runtime(runtime_settings()) as rt:
        loops = Loops(rt, worker=f"worker:{socket.gethostname()}:{os.getpid()}",
                      tick_interval=3600 * 24 * 365)  # tick/reminders run as deployments here
        loops.start()
        try:
            await runner.start()
        finally:
            await loops.stop()


def drain(
    loop: Annotated[bool, typer.Option(help="keep draining as events arrive")] = False,
    lease_seconds: Annotated[float, typer.Option(help="claims older than this are taken again")] = 300,
    batch_size: Annotated[int, typer.Option(help="events per batch")] = 200,
) -> None:
    """Drain the inbox now: apply each affected patient once per batch."""
    from datetime import timedelta

    from flows.drain import drain_once

    async def go() -> None:
        async with open_runtime(runtime_settings()) as rt:
            worker = f"drain:{socket.gethostname()}:{os.getpid()}"
            while True:
                result = await drain_once(rt, worker=worker, batch_size=batch_size,
                                          lease=timedelta(seconds=lease_seconds))
                if result.claimed:
                    console.print(f"batch: {result.claimed} events, {len(result.applied)} patients "
                                  f"applied, {len(result.deferred)} deferred, {len(result.failed)} failed")
                if not loop and (result.claimed == 0 or result.deferred):
                    return
                if result.claimed == 0 or result.deferred:
                    await asyncio.sleep(1.0)

    asyncio.run(go())


def parked() -> None:
    """Patients whose apply keeps failing, with the error (no clinical values)."""
    from store.db import session_scope
    from store.scheduling import list_parked

    async def go() -> None:
        async with open_runtime(runtime_settings()) as rt:
            with session_scope(rt.db) as session:
                rows = list_parked(session=session)
        if not rows:
            console.print("no parked enrolments")
        for row in rows:
            console.print(f"{row.patient_ref} {row.pathway_id} parked {row.parked_at:%Y-%m-%d %H:%M} "
                          f"after {row.failure_count} failures: {row.parked_error}")

    asyncio.run(go())


def unpark(patient_id: str) -> None:
    """Let a parked patient be evaluated again (after fixing the cause)."""
    from store.db import session_scope
    from store.enrolments import find_enrolments
    from store.scheduling import unpark as unpark_enrolment

    async def go() -> None:
        async with open_runtime(runtime_settings()) as rt:
            with session_scope(rt.db) as session:
                for row in find_enrolments(session=session, patient_ref=f"Patient/{patient_id}"):
                    unpark_enrolment(session=session, enrolment_id=row.id, at=rt.clock())
        console.print(f"Patient/{patient_id} unparked; the next tick evaluates it")

    asyncio.run(go())
