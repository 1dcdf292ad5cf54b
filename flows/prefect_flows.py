"""The Prefect flows: thin sequencing of the units of work; retries only on temporary errors.

Each unit of work is also a plain `*_work(rt, ...)` function: `eras serve --no-prefect` and
the tests run those directly on a Runtime. Every flow run uses the process's Runtime
(flows.process_runtime), opened once per process, not once per task run.
"""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import State

from fhir_adapters.errors import FhirTemporaryError
from flows.drain import drain_until_empty
from flows.poll import catch_up_gaps, poll_once
from flows.process_runtime import process_runtime
from flows.reminders import remind_once
from flows.runtime import Runtime
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


async def drain_work(rt: Runtime, batch_size: int = 200) -> dict[str, int]:
    results = await drain_until_empty(rt, worker=f"prefect:{socket.gethostname()}",
                                      batch_size=batch_size)
    return {"claimed": sum(r.claimed for r in results),
            "applied": sum(len(r.applied) for r in results),
            "deferred": sum(len(r.deferred) for r in results),
            "failed": sum(len(r.failed) for r in results)}


async def tick_work(rt: Runtime, limit: int = 500) -> int:
    return len(await tick_once(rt, limit=limit))


async def reminders_work(rt: Runtime) -> int:
    return len(await remind_once(rt, deliver=rt.deliver))


async def poll_work(rt: Runtime) -> int:
    return await poll_once(rt) + await catch_up_gaps(rt)


async def audit_outcomes_work(rt: Runtime, since: datetime, until: datetime) -> int:
    from engine.outcomes import load_outcome_definitions
    from flows.audit_report import compute_outcomes, updated_enrolments

    definitions = load_outcome_definitions()
    patients = dict.fromkeys(p for _, p in updated_enrolments(rt, since=since, until=until))
    return sum([await compute_outcomes(rt, p, definitions=definitions, now=until) for p in patients])


def audit_files_work(rt: Runtime, today: date, directory: str) -> list[str]:
    from flows.audit_report import previous_periods, write_period_report
    from store.db import session_scope

    written: list[str] = []
    with session_scope(rt.db) as session:
        for pathway in rt.pathways.values():
            for period in previous_periods(today):
                written += map(str, write_period_report(session, pathway, period, tz=rt.tz,
                                                        directory=Path(directory), generated=rt.clock()))
    return written


async def audit_report_work(rt: Runtime, directory: str | None = None,
                            today: date | None = None) -> list[str]:
    directory = directory or str(rt.report_dir)
    today = today or rt.clock().astimezone(UTC).date()
    midnight = datetime.combine(today, datetime.min.time(), UTC)
    await audit_outcomes_work(rt, midnight - timedelta(days=1), midnight)
    return audit_files_work(rt, today, directory)


@task(**RETRIES)
async def drain_task(batch_size: int) -> dict[str, int]:
    async with process_runtime() as rt:
        return await drain_work(rt, batch_size)


@flow(name="process-events")
async def process_events(batch_size: int = 200) -> dict[str, int]:
    """Drain the inbox: one apply per affected patient per batch."""
    async with process_runtime():
        counts = await drain_task(batch_size)
    get_run_logger().info("process-events: %s", counts)
    return counts


@task(**RETRIES)
async def tick_task(limit: int) -> int:
    async with process_runtime() as rt:
        return await tick_work(rt, limit)


@flow(name="tick")
async def tick(limit: int = 500) -> int:
    """Re-evaluate the enrolments whose next due/overdue/escalation time has passed."""
    async with process_runtime():
        return await tick_task(limit)


@task(**RETRIES)
async def reminders_task() -> int:
    async with process_runtime() as rt:
        return await reminders_work(rt)


@flow(name="reminders")
async def reminders() -> int:
    """CommunicationRequests for tasks due soon and escalations for overdue ones."""
    async with process_runtime():
        return await reminders_task()


@task(**RETRIES)
async def poll_task() -> int:
    async with process_runtime() as rt:
        return await poll_work(rt)


@flow(name="poll-ehr")
async def poll_ehr() -> int:
    """Resources changed since the watermark (and Backport gaps) into the inbox."""
    async with process_runtime():
        return await poll_task()


@task(**RETRIES)
async def audit_outcomes_task(since: datetime, until: datetime) -> int:
    async with process_runtime() as rt:
        return await audit_outcomes_work(rt, since, until)


@task
async def audit_files_task(today: date, directory: str) -> list[str]:
    async with process_runtime() as rt:
        return audit_files_work(rt, today, directory)


@flow(name="audit-report")
async def audit_report_flow(directory: str | None = None, today: date | None = None) -> list[str]:
    """Nightly: outcomes of the episodes updated the previous day, then the previous day's and
    month's report (summary CSV and MeasureReport) under `directory` (ERAS_AUDIT_REPORT_DIR)."""
    async with process_runtime() as rt:
        directory = directory or str(rt.report_dir)
        today = today or rt.clock().astimezone(UTC).date()
        midnight = datetime.combine(today, datetime.min.time(), UTC)
        computed = await audit_outcomes_task(midnight - timedelta(days=1), midnight)
        files = await audit_files_task(today, directory)
    get_run_logger().info("audit-report: outcomes of %d episodes, %d files", computed, len(files))
    return files
