"""The Prefect flows: thin sequencing of the units of work; retries only on temporary errors."""

from __future__ import annotations

import socket
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import State

from fhir_adapters.errors import FhirTemporaryError
from flows.config import RuntimeSettings, open_runtime
from flows.drain import drain_until_empty
from flows.poll import catch_up_gaps, poll_once
from flows.reminders import remind_once
from flows.tick import tick_once


def only_temporary(_task: Any, _task_run: Any, state: State) -> bool:
    """Retry when the EHR was unreachable (5xx, 429, timeouts), never on a fatal error."""
    try:
        state.result()
    except FhirTemporaryError:
        return True
    except Exception:
        return False
    return False


RETRIES: dict[str, Any] = {"retries": 3, "retry_delay_seconds": [5, 30, 120],
                           "retry_condition_fn": only_temporary}


@task(**RETRIES)
async def drain_task(batch_size: int) -> dict[str, int]:
    async with open_runtime(RuntimeSettings()) as rt:
        results = await drain_until_empty(rt, worker=f"prefect:{socket.gethostname()}",
                                          batch_size=batch_size)
    return {"claimed": sum(r.claimed for r in results),
            "applied": sum(len(r.applied) for r in results),
            "deferred": sum(len(r.deferred) for r in results),
            "failed": sum(len(r.failed) for r in results)}


@flow(name="process-events")
async def process_events(batch_size: int = 200) -> dict[str, int]:
    """Drain the inbox: one apply per affected patient per batch."""
    counts = await drain_task(batch_size)
    get_run_logger().info("process-events: %s", counts)
    return counts


@task(**RETRIES)
async def tick_task(limit: int) -> int:
    async with open_runtime(RuntimeSettings()) as rt:
        return len(await tick_once(rt, limit=limit))


@flow(name="tick")
async def tick(limit: int = 500) -> int:
    """Re-evaluate the enrolments whose next due/overdue/escalation time has passed."""
    return await tick_task(limit)


@task(**RETRIES)
async def reminders_task() -> int:
    async with open_runtime(RuntimeSettings()) as rt:
        return len(await remind_once(rt))


@flow(name="reminders")
async def reminders() -> int:
    """CommunicationRequests for tasks due soon and escalations for overdue ones."""
    return await reminders_task()


@task(**RETRIES)
async def poll_task() -> int:
    async with open_runtime(RuntimeSettings()) as rt:
        return await poll_once(rt) + await catch_up_gaps(rt)


@flow(name="poll-ehr")
async def poll_ehr() -> int:
    """Resources changed since the watermark (and Backport gaps) into the inbox."""
    return await poll_task()
