"""The Prefect flows: thin sequencing of the units of work; retries only on temporary errors."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import State

from api.config import Settings
from fhir_adapters.errors import FhirTemporaryError
from flows.config import open_runtime
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
    async with open_runtime(Settings()) as rt:
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
    async with open_runtime(Settings()) as rt:
        return len(await tick_once(rt, limit=limit))


@flow(name="tick")
async def tick(limit: int = 500) -> int:
    """Re-evaluate the enrolments whose next due/overdue/escalation time has passed."""
    return await tick_task(limit)


@task(**RETRIES)
async def reminders_task() -> int:
    async with open_runtime(Settings()) as rt:
        return len(await remind_once(rt, deliver=rt.deliver))


@flow(name="reminders")
async def reminders() -> int:
    """CommunicationRequests for tasks due soon and escalations for overdue ones."""
    return await reminders_task()


@task(**RETRIES)
async def poll_task() -> int:
    async with open_runtime(Settings()) as rt:
        return await poll_once(rt) + await catch_up_gaps(rt)


@flow(name="poll-ehr")
async def poll_ehr() -> int:
    """Resources changed since the watermark (and Backport gaps) into the inbox."""
    return await poll_task()


@task(**RETRIES)
async def audit_outcomes_task(since: datetime, until: datetime) -> int:
    from engine.outcomes import load_outcome_definitions
    from flows.audit_report import compute_outcomes, updated_enrolments

    definitions = load_outcome_definitions()
    async with open_runtime(Settings()) as rt:
        patients = dict.fromkeys(p for _, p in updated_enrolments(rt, since=since, until=until))
        return sum([await compute_outcomes(rt, p, definitions=definitions, now=until) for p in patients])


@task
async def audit_files_task(today: date, directory: str) -> list[str]:
    from flows.audit_report import previous_periods, write_period_report
    from store.db import session_scope

    written: list[str] = []
    async with open_runtime(Settings()) as rt:
        with session_scope(rt.db) as session:
            for pathway in rt.pathways.values():
                for period in previous_periods(today):
                    written += map(str, write_period_report(session, pathway, period, tz=rt.tz,
                                                            directory=Path(directory), generated=rt.clock()))
    return written


@flow(name="audit-report")
async def audit_report_flow(directory: str = "audit-reports", today: date | None = None) -> list[str]:
    """Nightly: outcomes of the episodes updated the previous day, then the previous day's and
    month's report (summary CSV and MeasureReport) under `directory`."""
    today = today or datetime.now(UTC).date()
    midnight = datetime.combine(today, datetime.min.time(), UTC)
    computed = await audit_outcomes_task(midnight - timedelta(days=1), midnight)
    files = await audit_files_task(today, directory)
    get_run_logger().info("audit-report: outcomes of %d episodes, %d files", computed, len(files))
    return files
