"""`eras serve` (API + runtime in one process) and `eras worker` (runtime against a Prefect server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from eras_cli.children import end_children
from eras_cli.patient_cmds import settings as runtime_settings
from flows.poll_options import POLL_HELP, describe_polling

# Prefect (through flows.deployments and flows.loops) and the API take seconds of CPU to import,
# the store and the FHIR client most of a second more; each command imports what it runs, so
# `eras pathway validate` or `eras parked` starts without Prefect (tests/cli/test_cli_imports.py).
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

    import uvicorn
    from prefect.runner import Runner

    from flows.loops import Loops
    from flows.runtime import Runtime
    from flows.settings import Settings

console = Console()
log = logging.getLogger(__name__)


def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    poll_seconds: Annotated[float, typer.Option(help=POLL_HELP)] = 0,
    tick_seconds: Annotated[float, typer.Option(help="tick and reminders interval")] = 60,
    prefect: Annotated[bool, typer.Option(help="run scheduled work as Prefect flow runs")] = True,
) -> None:
    """Run the API and the runtime (drain, and the scheduled deployments: tick, reminders,
    polling, audit report) in one process."""
    _configure_logging()
    asyncio.run(_serve(host, port, poll_seconds or None, tick_seconds, prefect))


def _configure_logging() -> None:
    from flows.logs import configure_logging

    settings = runtime_settings()
    configure_logging(settings.log_level, settings.log_format)


class RuntimeThread(threading.Thread):
    """The runtime's loops on their own thread and event loop.

    Its store calls are synchronous; on the API's loop they would stall request handling (and
    on SQLite could wait for a lock only that loop can release). The intake wakes the drain
    with a thread-safe call after each commit.
    """

    def __init__(self, settings: Settings, *, poll: float | None, tick: float,
                 prefect: bool) -> None:
        super().__init__(name="eras-runtime", daemon=True)
        self.settings, self.poll, self.tick, self.prefect = settings, poll, tick, prefect
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runtime: Runtime | None = None
        self.loops: Loops | None = None
        self.error: BaseException | None = None
        self.stop_asked = threading.Event()
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the API thread, which stops the server
            self.error = exc
        finally:  # started, failed, or stopped before it started
            self.ready.set()

    async def _main(self) -> None:
        self.loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        from eras_cli.mllp_cmds import start_if_configured
        from flows.deployments import deployments
        from flows.loops import Loops
        from flows.process_runtime import process_runtime, tune_collector
        from store.db import database_url
        from store.locks import claim_single_process
        from store.wakeup import listen_url

        if self.stop_asked.is_set():  # asked while importing: nothing is open yet
            return
        async with process_runtime(self.settings, migrate=True) as rt:
            if self.stop_asked.is_set():  # asked while migrating: the migrations were let finish
                return
            claim_single_process(rt.db)  # SQLite: one engine process; a second one stops here
            tune_collector()
            self.runtime = rt
            self.loops = Loops(
                rt, worker=f"serve:{socket.gethostname()}:{os.getpid()}",
                listen_url=listen_url(database_url(self.settings.database_url)),
                scheduled=deployments(polling=self.poll is not None),
                intervals={"tick": self.tick, "reminders": self.tick, "poll-ehr": self.poll},
                as_flow_runs=self.prefect)
            self.loops.start()
            log.info("%s", describe_polling(self.settings.poll, self.poll))
            mllp = await start_if_configured(rt, self.settings.mllp, on_stored=self.loops.wake)
            self.ready.set()
            await self._stopping.wait()
            if mllp is not None:
                mllp.close()
            await self.loops.stop()

    def wake(self, *_: object) -> None:
        if self.loop is not None and self.loops is not None:
            self.loop.call_soon_threadsafe(self.loops.wake)

    def ask_stop(self) -> None:
        """Stop now if running, else once started (the start is let finish its step, never
        cut halfway through a migration). Safe from a signal handler and from any thread."""
        self.stop_asked.set()
        if self.loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended: stopped already
                self.loop.call_soon_threadsafe(self._stopping.set)

    def stop(self) -> None:
        self.ask_stop()
        if self.ident is not None:  # started
            self.join(timeout=30)


async def _serve(host: str, port: int, poll: float | None, tick: float, prefect: bool) -> None:
    runtime = RuntimeThread(runtime_settings(), poll=poll, tick=tick, prefect=prefect)
    try:
        with _stopped_by_signals(runtime) as servers:
            await _start_and_serve(runtime, host, port, servers)
    finally:
        await asyncio.to_thread(runtime.stop)
        # The flow runs' logs and events go to Prefect's server before end_children ends it.
        if prefect and runtime.loops is not None:
            from flows.prefect_server import flush_to_prefect_server

            await asyncio.to_thread(flush_to_prefect_server, timeout=5)
        await asyncio.to_thread(end_children)


async def _start_and_serve(runtime: RuntimeThread, host: str, port: int,
                           servers: list[uvicorn.Server]) -> None:
    from api.main import create_app
    from api.server import server as api_server

    if runtime.stop_asked.is_set():  # while importing the API
        return
    runtime.start()
    await asyncio.to_thread(runtime.ready.wait)
    if runtime.stop_asked.is_set():
        return
    if runtime.error is not None or runtime.runtime is None:
        console.print(f"[red]the runtime did not start[/red]: {runtime.error}")
        raise typer.Exit(1)
    rt, settings = runtime.runtime, runtime.settings
    app = create_app(settings, pathways=rt.pathways)
    app.state.on_event_stored = runtime.wake
    app.state.runtime, app.state.clock, app.state.loops = rt, rt.clock, runtime.loops
    server = api_server(app, host, port, settings.http)
    servers.append(server)
    if runtime.stop_asked.is_set():
        return
    console.print(f"eras serve: API on http://{host}:{port}, runtime running "
                  f"(target {rt.target.value}, pathways {', '.join(rt.pathways)})")
    await server.serve()


@contextlib.contextmanager
def _stopped_by_signals(runtime: RuntimeThread) -> Iterator[list[uvicorn.Server]]:
    """SIGTERM or SIGINT before the API serves (uvicorn then takes them over) stops the start
    instead of killing the process halfway through it, a migration say: the runtime stops once
    its step is done, and a server made meanwhile (in the yielded list) stops once started.
    The previous handlers are back for the stop itself, so a second signal still ends it at once."""
    servers: list[uvicorn.Server] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        runtime.ask_stop()
        for server in servers:
            server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield servers
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker(
    poll_seconds: Annotated[float, typer.Option(help=POLL_HELP)] = 0,
    metrics_port: Annotated[int, typer.Option(help="serve /metrics on this port; 0 = off")] = 0,
) -> None:
    """Run the drain loop here and serve the scheduled deployments (flows/deployments.py) to
    the Prefect server in PREFECT_API_URL. Stopping a worker never pauses their schedules."""
    if not os.environ.get("PREFECT_API_URL"):
        console.print("[red]eras worker needs PREFECT_API_URL[/red] (the Prefect server to serve "
                      "deployments to); for one process on one machine use `eras serve`.")
        raise typer.Exit(2)
    _configure_logging()
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    asyncio.run(_worker(poll_seconds or None))


async def _worker(poll: float | None) -> None:
    from prefect.runner import Runner

    from flows.deployments import add_to_runner
    from flows.loops import Loops
    from flows.process_runtime import process_runtime, tune_collector
    from store.db import database_url
    from store.locks import claim_single_process
    from store.wakeup import listen_url

    settings = runtime_settings()
    async with process_runtime(settings, migrate=True) as rt:
        claim_single_process(rt.db)  # SQLite: one engine process; a second one stops here
        tune_collector()
        runner = Runner(name=f"eras-worker-{socket.gethostname()}-{os.getpid()}",
                        pause_on_shutdown=False)
        served = await add_to_runner(runner, timezone=settings.timezone, polling=poll is not None,
                                     intervals={"poll-ehr": poll} if poll else None)
        loops = Loops(rt, worker=f"worker:{socket.gethostname()}:{os.getpid()}",
                      listen_url=listen_url(database_url(settings.database_url)))
        loops.start()
        log.info("%s", describe_polling(settings.poll, poll))
        try:
            await _run_until_sigterm(runner, ready=lambda: console.print(
                f"eras worker: serving {', '.join(served)}; drain loop running"))
        finally:
            await loops.stop()


async def _run_until_sigterm(runner: Runner, *, ready: Callable[[], None]) -> None:
    """Run the Runner; on SIGTERM stop it (never pausing the schedules) and return.

    Prefect's own SIGTERM handler calls its async stop without awaiting it and raises
    SystemExit inside the event loop: ours replaces it, once `start()` has installed it. Only
    then is the worker `ready` (says it serves): a SIGTERM before would end it unstopped.
    """
    started = asyncio.create_task(runner.start())
    await asyncio.sleep(0)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    ready()
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait([started, stop], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if started.done():
        return started.result()
    log.info("SIGTERM: stopping the runner; the deployments' schedules stay active")
    if runner.started:
        await runner.astop()
    started.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await started


def drain(
    loop: Annotated[bool, typer.Option(help="keep draining as events arrive")] = False,
    lease_seconds: Annotated[float, typer.Option(help="claims older than this are taken again")] = 300,
    batch_size: Annotated[int, typer.Option(help="events per batch")] = 200,
) -> None:
    """Drain the inbox now: apply each affected patient once per batch."""
    from datetime import timedelta

    from flows.config import open_runtime
    from flows.drain import DrainResult, drain_once
    from flows.loops import Loops
    from flows.process_runtime import tune_collector
    from store.db import database_url
    from store.locks import claim_single_process
    from store.wakeup import listen_url

    def report(result: DrainResult) -> None:
        if result.claimed:
            console.print(f"batch: {result.claimed} events, {len(result.applied)} patients "
                          f"applied, {len(result.deferred)} deferred, {len(result.failed)} failed")

    async def go() -> None:
        settings = runtime_settings()
        async with open_runtime(settings) as rt:
            claim_single_process(rt.db)
            tune_collector()
            worker = f"drain:{socket.gethostname()}:{os.getpid()}"
            lease = timedelta(seconds=lease_seconds)
            if loop:  # as eras serve and eras worker drain: the next batch claimed as slots free
                loops = Loops(rt, worker=worker, drain_interval=1.0, batch_size=batch_size, lease=lease,
                              listen_url=listen_url(database_url(settings.database_url)), on_batch=report)
                loops.start()
                loops.wake()
                try:
                    await asyncio.Event().wait()  # until stopped
                finally:
                    await loops.stop()
                return
            while True:
                result = await drain_once(rt, worker=worker, batch_size=batch_size, lease=lease)
                report(result)
                if result.claimed == 0 or result.deferred:
                    return

    asyncio.run(go())


def parked() -> None:
    """Patients whose apply keeps failing, with the error (no clinical values)."""
    from flows.config import open_runtime
    from store.db import session_scope
    from store.scheduling import list_parked_patients

    async def go() -> None:
        async with open_runtime(runtime_settings()) as rt:
            with session_scope(rt.db) as session:
                rows = list_parked_patients(session=session)
        if not rows:
            console.print("no parked patients")
        for row in rows:
            console.print(f"{row.patient_ref} {row.pathway_id or '(no enrolment)'} parked "
                          f"{row.parked_at:%Y-%m-%d %H:%M} after {row.failure_count} failures: "
                          f"{row.error}", markup=False, soft_wrap=True)

    asyncio.run(go())


def unpark(patient_id: str) -> None:
    """Let a parked patient be evaluated again (after fixing the cause)."""
    from flows.config import open_runtime
    from store.db import session_scope
    from store.scheduling import unpark_patient

    async def go() -> None:
        async with open_runtime(runtime_settings()) as rt:
            with session_scope(rt.db) as session:
                unpark_patient(session=session, patient_ref=f"Patient/{patient_id}", at=rt.clock())
        console.print(f"Patient/{patient_id} unparked; the next tick evaluates it")

    asyncio.run(go())


def subscribe(
    endpoint: Annotated[str, typer.Option(help="public URL of POST /fhir/notifications/{id}")],
    subscription_id: Annotated[str, typer.Option("--id", help="the id the notifier is known by")] = "ehr",
    style: Annotated[str, typer.Option(help="r4 (criteria) or backport (topic)")] = "backport",
    create: Annotated[bool, typer.Option(help="POST them to the EHR (else print)")] = False,
) -> None:
    """Print (or --create) the Subscriptions that make the EHR notify the engine."""
    import json

    from fhir_adapters.subscriptions import backport_subscription, r4_subscriptions
    from flows.config import open_runtime
    from flows.poll import watched_types

    # The notifier presents the credential the intake checks: the one ERAS_SUBSCRIPTIONS names.
    placeholder = f"<the secret of {subscription_id} in ERAS_SUBSCRIPTIONS>"
    header = f"Authorization: Bearer {placeholder}"
    url = f"{endpoint.rstrip('/')}/{subscription_id}"
    settings = runtime_settings()

    async def go() -> None:
        async with open_runtime(settings, migrate=False) as rt:
            types = [t for t in watched_types(rt) if t != "Patient"]
            reason = f"ERAS pathway engine: {', '.join(rt.pathways)}"
            subs = (r4_subscriptions(types, endpoint=url, secret_header=header, reason=reason)
                    if style == "r4" else [backport_subscription(types, endpoint=url,
                                                                 secret_header=header, reason=reason)])
            if not create:
                print(json.dumps(subs, indent=2))
                console.print("# --create fills in the secret from ERAS_SUBSCRIPTIONS", style="dim")
                return
            secret = settings.subscriptions.get(subscription_id)
            if secret is None:
                console.print(f"[red]--create needs a secret for {subscription_id}[/red] in "
                              "ERAS_SUBSCRIPTIONS or ERAS_SUBSCRIPTIONS_FILE (the notifier presents it)")
                raise typer.Exit(2)
            for sub in subs:
                sub["channel"]["header"] = [f"Authorization: Bearer {secret.get_secret_value()}"]
                created = await rt.ehr.create(sub)
                console.print(f"created Subscription/{created.get('id')} ({created.get('status')})")

    asyncio.run(go())


def migrate() -> None:
    """Bring the store to the newest Alembic revision (the deployment's migrations job; safe to
    repeat and to run beside running processes: migrations take an advisory lock)."""
    from store.db import database_url
    from store.migrate import upgrade

    url = database_url(runtime_settings().database_url)
    upgrade(url)
    console.print("the store is at the newest migration")
