"""Concurrent batch (and transaction) Bundles to one FHIR server, sent together as one request.

A drain applies several patients at once (flows.drain), and each apply sends one batch Bundle
to read the record and one transaction Bundle to write its plan. On this machine an HTTP request
costs this process 2-4 ms of CPU whatever its size and the sandbox EHR as much again, while one
more patient's entries in a request cost a fraction of that (bench/apply.py, "at once"). So a
Bundle submitted while another of its kind is in flight waits for it, and goes with every other
Bundle that waited meanwhile, as one request, up to `max_entries` entries: an idle EHR sees each
Bundle at once, a busy one sees fewer, larger requests. The same group commit as the intake's.

Each caller gets the response entries of its own Bundle, in its order, as a response Bundle of
its own. Batch entries are independent, so a merged batch means the same as its parts. A merged
transaction is all-or-nothing across its parts: when the server refuses one (a version conflict,
a rejected resource: FhirFatalError), each part is sent again alone, so the error reaches only the
caller whose Bundle caused it and the others are written as if they had gone alone. A temporary
error (the client has already retried it with backoff), or credentials refused, reaches every
part's caller.

Callers hold their patient's lock while they wait (flows.apply), so a merged request never
reads or writes a patient earlier than that patient's own request would have.

On PostgreSQL the drain's applies join a `Flight`: a window about to send waits (a moment at
most) until each apply running then waits for the EHR too or is past this kind, so that applies
whose store work ends one thread after another still share their requests (flows.runtime).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirAuthError, FhirFatalError

log = logging.getLogger(__name__)

Send = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class _Member:
    """One apply in a Flight: whether it waits for the EHR now, and the kinds it has sent."""

    waiting: bool = False
    sent: set[str] = field(default_factory=set)


_MEMBER: contextvars.ContextVar[_Member | None] = contextvars.ContextVar("flight_member", default=None)


class Flight:
    """The drain's applies running, as the windows see them. A window about to send waits, up
    to `linger` seconds, until each apply that was running when it began to wait either waits
    for the EHR too or has already sent its Bundle of this kind: on PostgreSQL the applies'
    store work runs on threads, one after another under the GIL, so they reach the EHR ~20 ms
    apart and would each find the window idle. Applies that join later, and those past this
    kind (settling their events, or reading while this window writes), are not waited for: the
    drain starts applies continuously (flows.loops), so some are always at their store work.
    With no apply joined (the tick, the API, a lone apply) nothing waits."""

    def __init__(self, linger: float = 0.0) -> None:
        self.linger = linger
        self._members: set[_Member] = set()
        self._wakeups: list[asyncio.Future[None]] = []

    @contextmanager
    def joined(self) -> Iterator[None]:
        """Around one apply (its task and the tasks it starts)."""
        member = _Member()
        self._members.add(member)
        token = _MEMBER.set(member)
        try:
            yield
        finally:
            _MEMBER.reset(token)
            self._members.discard(member)
            self.changed()

    @contextmanager
    def waiting(self, kind: str) -> Iterator[None]:
        """Around a joined apply's wait for a window of `kind` (queued, then in flight)."""
        member = _MEMBER.get()
        if member is None or member not in self._members:
            yield
            return
        member.waiting = True
        self.changed()
        try:
            yield
        finally:
            member.waiting = False
            member.sent.add(kind)

    def changed(self) -> None:
        wakeups, self._wakeups = self._wakeups, []
        for wakeup in wakeups:
            if not wakeup.done() and not wakeup.get_loop().is_closed():
                wakeup.set_result(None)

    async def all_waiting(self, kind: str) -> None:
        """Until each apply running now waits for the EHR or has sent its `kind`, or `linger` has passed."""
        coming = [m for m in self._members if kind not in m.sent]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger

        def still_coming() -> bool:
            return any(m in self._members and not m.waiting and kind not in m.sent for m in coming)

        while still_coming() and (left := deadline - loop.time()) > 0:
            wakeup = loop.create_future()
            self._wakeups.append(wakeup)
            await asyncio.wait({wakeup}, timeout=left)


@dataclass
class _Waiting:
    bundle: Mapping[str, Any]
    entries: list[Any]
    answer: asyncio.Future[dict[str, Any]]


class _Window:
    """Bundles of one kind waiting to go; at most one request of the kind in flight."""

    def __init__(self, kind: str, send: Send, max_entries: int, flight: Flight) -> None:
        self.kind = kind
        self._send = send
        self._max_entries = max_entries
        self._flight = flight
        self._waiting: list[_Waiting] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        entries = list(bundle.get("entry") or [])
        if self._max_entries <= 0 or len(entries) >= self._max_entries:
            return await self._send(bundle)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(bundle, entries, loop.create_future())
        if self._sender is None or self._sender.done() or self._sender.get_loop() is not loop:
            self._waiting = [w for w in self._waiting if w.answer.get_loop() is loop]
            self._sender = loop.create_task(self._send_all())
        self._waiting.append(waiting)
        with self._flight.waiting(self.kind):
            try:
                return await waiting.answer
            except asyncio.CancelledError:
                # Not yet taken: it is not sent. Taken: it is sent all the same (as when a caller is
                # stopped after its own request went out), and its answer is dropped.
                if waiting in self._waiting:
                    self._waiting.remove(waiting)
                raise

    async def _send_all(self) -> None:
        """Send what waits, group after group, until nothing does."""
        while self._waiting:
            await self._flight.all_waiting(self.kind)
            group = self._take()
            await self._send_group(group)

    def _take(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        count = 0
        while self._waiting and (not group or count + len(self._waiting[0].entries) <= self._max_entries):
            waiting = self._waiting.pop(0)
            group.append(waiting)
            count += len(waiting.entries)
        return group

    async def _send_group(self, group: list[_Waiting]) -> None:
        if len(group) == 1:
            await self._answer(group[0], self._send(group[0].bundle))
            return
        merged = _bundle(self.kind, [e for waiting in group for e in waiting.entries])
        try:
            response = await self._send(merged)
        except FhirAuthError as exc:  # the credentials, not a part: alone each would be refused too
            for waiting in group:
                _settle(waiting, exc=exc)
            return
        except FhirFatalError as exc:
            # One part may be at fault (a conflict, a rejected resource): each alone tells which.
            log.info("FHIR %s of %d Bundles refused (%s): each sent alone", self.kind, len(group),
                     exc.status or type(exc).__name__)
            await asyncio.gather(*(self._answer(w, self._send(w.bundle)) for w in group))
            return
        except asyncio.CancelledError:  # the loop is closing: no answer will come
            for waiting in group:
                waiting.answer.cancel()
            raise
        except Exception as exc:  # temporary (the client has retried it already): every part's
            for waiting in group:
                _settle(waiting, exc=exc)
            return
        entries = response.get("entry") or []
        if len(entries) != len(merged["entry"]):
            error = FhirFatalError(f"FHIR {self.kind}-response has {len(entries)} entries for "
                                   f"{len(merged['entry'])} requests")
            for waiting in group:
                _settle(waiting, exc=error)
            return
        start = 0
        for waiting in group:
            end = start + len(waiting.entries)
            _settle(waiting, answer={**response, "entry": entries[start:end]})
            start = end

    async def _answer(self, waiting: _Waiting, sending: Awaitable[dict[str, Any]]) -> None:
        try:
            _settle(waiting, answer=await sending)
        except asyncio.CancelledError:
            waiting.answer.cancel()
            raise
        except Exception as exc:
            _settle(waiting, exc=exc)


def _settle(waiting: _Waiting, *, answer: dict[str, Any] | None = None,
            exc: BaseException | None = None) -> None:
    if waiting.answer.done():  # its caller was stopped
        return
    if exc is not None:
        waiting.answer.set_exception(exc)
    else:
        waiting.answer.set_result(answer or {})


def _bundle(kind: str, entries: list[Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


class Coalescer:
    """One FHIR server's batch and transaction Bundles, each kind sent together while one is in
    flight (module docstring). `max_entries` 0: every Bundle goes alone, at once."""

    def __init__(self, client: FhirClient, *, max_entries: int, flight: Flight | None = None) -> None:
        self.client = client
        self.max_entries = max_entries
        self.flight = flight or Flight()
        self._batches = _Window("batch", client.batch, max_entries, self.flight)
        self._transactions = _Window("transaction", client.transaction, max_entries, self.flight)

    async def batch(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """The batch-response to `bundle`'s entries, as if sent alone."""
        return await self._batches.submit(bundle)

    async def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """The transaction-response to `bundle`'s entries, as if sent alone."""
        return await self._transactions.submit(bundle)
