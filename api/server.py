"""uvicorn for `eras serve`: bounded waits on slow clients, a connection limit, a stop that exits 0."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from flows.settings import HttpSettings


def head_deadline_protocol(seconds: float) -> type[H11Protocol]:
    """h11, closing a new connection whose first request head has not arrived in `seconds`.

    uvicorn's keep-alive timer runs only between requests, and any byte cancels it: a client that
    opens a connection and sends half a request line would hold its slot for ever.
    """

    class HeadDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._deadline = self.loop.call_later(seconds, self._head_overdue)

        def _head_overdue(self) -> None:
            if self.cycle is None:  # no request was read on this connection yet
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return HeadDeadline


class Server(uvicorn.Server):
    """A stop asked by SIGTERM or SIGINT returns from `serve()` like any clean end.

    uvicorn re-raises the signal it caught once it has stopped serving, which kills the process
    before `eras serve` stops its runtime thread and the in-process Prefect server's child: the
    caller now does that, then exits 0.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def server(app: Any, host: str, port: int, http: HttpSettings) -> Server:
    """The server for `app` with the limits in `http` (ERAS_HTTP_*)."""
    return Server(uvicorn.Config(
        app, host=host, port=port, log_level="warning", log_config=None,  # the root handler's format
        http=head_deadline_protocol(http.head_seconds), timeout_keep_alive=http.keep_alive_seconds,
        limit_concurrency=http.limit_concurrency, timeout_graceful_shutdown=http.shutdown_seconds,
    ))
