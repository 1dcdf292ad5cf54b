"""Long-running loops for `eras serve` and `eras worker`: the drain wakes on new inbox rows.

The drain wakes on `wake()` (the intake's on-commit hook in this process) and, on PostgreSQL,
on a NOTIFY from any process; a slow poll is only the safety net. In `eras serve` the same
loops also run the scheduled deployments (flows.deployments) on their declared schedules: the
embedded default has no Prefect server, and Prefect's ephemeral API does not schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prefect._vendor.croniter import croniter

from flows.deployments import Deployment
from flows.drain import Batch, DrainResult, apply_batch, claim
from flows.metrics import observe_drain
from flows.prefect_server import prefect_server_started
from flows.runtime import Runtime
from store.wakeup import listen

log = logging.getLogger(__name__)

LISTENING_SAFETY_NET = 30.0  # seconds between drains when NOTIFY wakes us


@dataclass
class Loops:
    """The runtime's background work; `wake()` is the intake's on-commit hook."""

    rt: Runtime
    worker: str
    drain_interval: float = 2.0  # safety net when no wake-up arrives
    batch_size: int = 200
    listen_url: str | None = None  # PostgreSQL: wake on NOTIFY from any process
    scheduled: list[Deployment] = field(default_factory=list)  # run here (eras serve)
    intervals: Mapping[str, float | None] = field(default_factory=dict)  # overrides; None = off
    as_flow_runs: bool = True  # scheduled work as Prefect flow runs (else plain calls)
    lease: timedelta = timedelta(minutes=5)  # claims older than this are taken again
    on_batch: Callable[[DrainResult], None] | None = None  # told of each batch settled (eras drain)
    processed: int = 0
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    listening: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self, *_: object) -> None:
        self._event.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._drain(), name="drain")]
        if self.listen_url is not None:
            self._tasks.append(asyncio.create_task(
                listen(self.listen_url, self.wake, ready=self.listening), name="listen"))
        for deployment in self.scheduled:
            if self.intervals.get(deployment.name, 0) is not None:
                self._tasks.append(asyncio.create_task(self._every(deployment), name=deployment.name))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drain(self) -> None:
        backoff = self.drain_interval
        self.rt.slots.listeners.append(self.wake)  # an apply's end: a slot, and its patient's events
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout=backoff)
                self._event.clear()
                backoff = await self._drain_all()
                if self.listening.is_set():
                    backoff = max(backoff, LISTENING_SAFETY_NET)
        finally:
            self.rt.slots.listeners.remove(self.wake)

    async def _drain_all(self) -> float:
        """Drain until empty, claiming a batch whenever an apply slot is free and events may be
        waiting (woken, or an apply ended) while earlier batches still apply: a batch's last
        applies mostly wait for the EHR, and waiting for them left this process idle. Back off
        (up to a minute) while the EHR is unreachable or the store fails."""
        slots, running, backoff = self.rt.slots, set[asyncio.Task[None]](), list[float]()
        self._event.set()
        try:
            while not backoff:
                await self._event.wait()
                self._event.clear()
                if not slots.free():
                    continue  # the end of an apply wakes us again
                started = time.perf_counter()
                try:
                    batch = await claim(self.rt, worker=self.worker, batch_size=self.batch_size,
                                        lease=self.lease)
                except Exception:  # never let the loop die: the lease hands the batch to the next try
                    log.exception("drain failed")
                    backoff.append(min(self.drain_interval * 8, 60.0))
                    break
                if batch.claimed:
                    task = asyncio.create_task(self._apply(batch, started, backoff))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    task.add_done_callback(self.wake)  # its patients' later events, if any
                elif not running:
                    return self.drain_interval
            await asyncio.gather(*running)
        except asyncio.CancelledError:
            for task in running:
                task.cancel()  # each gives its unsettled events back (flows.drain.apply_batch)
            await asyncio.gather(*running, return_exceptions=True)
            raise
        return backoff[0]

    async def _apply(self, batch: Batch, started: float, backoff: list[float]) -> None:
        try:
            result = await apply_batch(self.rt, batch)
        except Exception:
            log.exception("drain failed")
            backoff.append(min(self.drain_interval * 8, 60.0))
            return
        observe_drain(result, time.perf_counter() - started)
        self.processed += len(result.applied)
        if self.on_batch is not None:
            self.on_batch(result)
        if result.deferred:
            backoff.append(min(self.drain_interval * 4, 60.0))

    def next_delay(self, deployment: Deployment, now: datetime) -> float:
        """Seconds until `deployment` is next due; cron in the hospital's time zone."""
        override = self.intervals.get(deployment.name)
        if override is not None:
            return override
        if deployment.cron is not None:
            # Prefect's own croniter: the same next instant a Prefect server would schedule.
            local = now.astimezone(self.rt.tz)
            return (croniter(deployment.cron, local).get_next(datetime) - local).total_seconds()
        assert deployment.interval is not None
        return deployment.interval

    async def _every(self, deployment: Deployment) -> None:
        """Interval work runs at start, then every interval; cron work waits for its instant."""
        if deployment.cron is not None and deployment.name not in self.intervals:
            await asyncio.sleep(self.next_delay(deployment, self.rt.clock()))
        while True:
            try:
                await self.run(deployment)
            except Exception:
                log.exception("%s failed", deployment.name)
            await asyncio.sleep(self.next_delay(deployment, self.rt.clock()))

    async def run(self, deployment: Deployment) -> object:
        """One run: a Prefect flow run (it reuses this process's Runtime) or a plain call."""
        if self.as_flow_runs:
            await prefect_server_started()  # never on this loop: it would block every task
            return await deployment.flow(**deployment.parameters)
        return await deployment.run(self.rt)
