"""Prefect's temporary server started on a thread of its own, so that no event loop waits for it.

Without PREFECT_API_URL, Prefect starts its temporary (ephemeral) server inside `get_client()`
on the first flow run: a synchronous start that launches the server's process, then polls its
/health with blocking sleeps until it answers (10-20 s on a quiet machine, up to
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS). On `eras serve`'s runtime loop that froze
every task, the stop request included, until the server was up. Started here first, the flow
runs find it running; an awaiting task cancelled meanwhile leaves the starting thread behind,
a daemon the process does not wait for (`eras serve` ends the server's process itself:
eras_cli.children).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from concurrent.futures import Future

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

log = logging.getLogger(__name__)

_lock = threading.Lock()
_start: Future[None] | None = None


async def prefect_server_started() -> None:
    """Return once the Prefect API the flow runs will use answers: at once with PREFECT_API_URL
    set, else after the one start of the temporary server (a failed start is tried again by the
    next caller, as Prefect's own start would be)."""
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    await asyncio.wrap_future(_starting())


def _starting() -> Future[None]:
    global _start
    with _lock:
        if _start is None or (_start.done() and _start.exception() is not None):
            _start = Future()
            # Running before any awaiter can cancel it: one cancelled waiter never cancels the rest.
            _start.set_running_or_notify_cancel()
            context = contextvars.copy_context()  # the caller's Prefect settings, if any
            threading.Thread(target=context.run, args=(_start_server, _start),
                             name="prefect-server-start", daemon=True).start()
        return _start


def _start_server(done: Future[None]) -> None:
    from prefect.server.api.server import SubprocessASGIServer

    try:
        SubprocessASGIServer().start()  # the instance get_client() starts, so it finds it running
    except BaseException as exc:  # handed to the awaiting flow runs, which log it
        done.set_exception(exc)
    else:
        done.set_result(None)


def flush_to_prefect_server(timeout: float) -> None:
    """Send the logs and events that flow runs left queued to Prefect's server, waiting at most
    `timeout` seconds for each kind. Call it after the last flow run and before the server's
    process ends: Prefect's own flush at interpreter exit has no time limit, and retried them
    against the closed port for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for what, worker in (("logs", APILogWorker), ("events", EventsWorker)):
        drained = worker.drain_all(timeout=timeout)  # off any event loop: (done, not done)
        if isinstance(drained, tuple) and drained[1]:
            log.warning("Prefect's server took more than %s s to receive the flow runs' %s: "
                        "those not yet sent may be lost", timeout, what)
