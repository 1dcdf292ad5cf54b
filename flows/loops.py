"""Long-running loops for `eras serve` and `eras worker`: the drain wakes on new inbox rows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from flows.drain import drain_once
from flows.poll import catch_up_gaps, poll_once
from flows.reminders import remind_once
from flows.runtime import Runtime
from flows.tick import tick_once

log = logging.getLogger(__name__)


@dataclass
class Loops:
    """The runtime's background work; `wake()` is the intake's on-commit hook."""

    rt: Runtime
    worker: str
    drain_interval: float = 2.0  # safety net when no wake-up arrives
    tick_interval: float | None = 60.0  # None: no tick/reminders here (a scheduler runs them)
    poll_interval: float | None = None  # None: the EHR pushes (subscriptions); no polling
    batch_size: int = 200
    scheduled: Callable[[str], Awaitable[object]] | None = None  # run tick/reminders via Prefect
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    processed: int = 0

    def wake(self, *_: object) -> None:
        self._event.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._drain(), name="drain")]
        if self.tick_interval:
            self._tasks += [asyncio.create_task(self._every(self.tick_interval, job), name=job)
                            for job in ("tick", "reminders")]
        if self.poll_interval:
            self._tasks.append(asyncio.create_task(self._every(self.poll_interval, "poll"), name="poll"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drain(self) -> None:
        backoff = self.drain_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=backoff)
            self._event.clear()
            backoff = await self._drain_all()

    async def _drain_all(self) -> float:
        """Drain until empty; back off (up to a minute) while the EHR is unreachable."""
        while True:
            try:
                result = await drain_once(self.rt, worker=self.worker, batch_size=self.batch_size)
            except Exception:  # never let the loop die: the lease hands the batch to the next try
                log.exception("drain failed")
                return min(self.drain_interval * 8, 60.0)
            self.processed += len(result.applied)
            if result.deferred:
                return min(self.drain_interval * 4, 60.0)
            if result.claimed == 0:
                return self.drain_interval

    async def _every(self, interval: float, job: str) -> None:
        while True:
            try:
                await self.run_job(job)
            except Exception:
                log.exception("%s failed", job)
            await asyncio.sleep(interval)

    async def run_job(self, job: str) -> object:
        if self.scheduled is not None and job in ("tick", "reminders"):
            return await self.scheduled(job)
        if job == "tick":
            return await tick_once(self.rt)
        if job == "reminders":
            return await remind_once(self.rt, deliver=self.rt.deliver)
        return await poll_once(self.rt) + await catch_up_gaps(self.rt)
