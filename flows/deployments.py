"""The time-driven work, defined once: what runs, how often, and whether two runs may overlap.

`eras worker` serves these to a Prefect server (flows.worker_runner), `eras serve` runs them
in-process on the same intervals (flows.loops), and deploy/prefect.yaml is generated from them
(`python -m flows.deployments > deploy/prefect.yaml`; a test checks that they agree).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml
from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.runner import Runner
from prefect.schedules import Cron, Interval, Schedule

from flows import prefect_flows as pf
from flows.runtime import Runtime

FLOWS_FILE = "flows/prefect_flows.py"
HOSPITAL_TZ = "{{ $ERAS_TIMEZONE }}"  # prefect.yaml: resolved from the environment at deploy time


@dataclass(frozen=True)
class Deployment:
    """One scheduled unit of work. `exclusive`: a global concurrency limit of 1 on the Prefect
    server, and a run that would overlap the previous one is cancelled, not queued."""

    name: str
    flow: Flow[..., Any]
    work: Callable[..., Awaitable[object]]  # the same work on a Runtime, without Prefect
    interval: float | None = None  # seconds
    cron: str | None = None  # in the hospital's time zone
    exclusive: bool = True
    parameters: Mapping[str, Any] = field(default_factory=dict)
    needs_polling: bool = False  # only where the EHR is polled (no subscriptions)

    def schedule(self, timezone: str) -> Schedule:
        if self.cron is not None:
            return Cron(self.cron, timezone=timezone)
        assert self.interval is not None
        return Interval(timedelta(seconds=self.interval))

    def concurrency(self) -> ConcurrencyLimitConfig | None:
        if not self.exclusive:
            return None
        return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)

    async def run(self, rt: Runtime) -> object:
        return await self.work(rt, **self.parameters)


DEPLOYMENTS: tuple[Deployment, ...] = (
    # The drain's safety net: the hot path is the drain loop woken by each stored event.
    # Claims are row-locked, so overlapping runs are harmless.
    Deployment("process-events", pf.process_events, pf.drain_work, interval=30, exclusive=False,
               parameters={"batch_size": 200}),
    Deployment("tick", pf.tick, pf.tick_work, interval=60),
    Deployment("reminders", pf.reminders, pf.reminders_work, interval=60),
    Deployment("poll-ehr", pf.poll_ehr, pf.poll_work, interval=60, needs_polling=True),
    # Writes under ERAS_AUDIT_REPORT_DIR (the runtime's report_dir) unless a run names a directory.
    Deployment("audit-report", pf.audit_report_flow, pf.audit_report_work, cron="0 2 * * *"),
)


def deployments(*, polling: bool) -> list[Deployment]:
    """The deployments this set-up runs: poll-ehr only when the EHR is polled."""
    return [d for d in DEPLOYMENTS if polling or not d.needs_polling]


async def add_to_runner(runner: Runner, *, timezone: str, polling: bool,
                        intervals: Mapping[str, float] | None = None) -> list[str]:
    """Serve the deployments from this process: same names, schedules and limits as the
    generated prefect.yaml. The runner must not pause them when it stops (the other workers
    serve the same deployments), hence `Runner(pause_on_shutdown=False)`."""
    if runner.pause_on_shutdown:
        raise ValueError("a runner serving shared deployments must not pause them on shutdown")
    names = []
    for d in deployments(polling=polling):
        override = (intervals or {}).get(d.name)
        schedule = Interval(timedelta(seconds=override)) if override else d.schedule(timezone)
        await runner.aadd_flow(d.flow, name=d.name, schedule=schedule, parameters=dict(d.parameters),
                               concurrency_limit=d.concurrency())
        names.append(d.name)
    return names


def _yaml_entry(d: Deployment) -> dict[str, Any]:
    schedule: dict[str, Any] = ({"cron": d.cron, "timezone": HOSPITAL_TZ} if d.cron
                                else {"interval": d.interval})
    entry: dict[str, Any] = {"name": d.name, "entrypoint": f"{FLOWS_FILE}:{d.flow.fn.__name__}"}
    if d.parameters:
        entry["parameters"] = dict(d.parameters)
    entry["schedules"] = [schedule]
    concurrency = d.concurrency()
    if concurrency is not None:
        entry["concurrency_limit"] = {"limit": concurrency.limit,
                                      "collision_strategy": concurrency.collision_strategy.value}
    entry["work_pool"] = {"name": "eras", "work_queue_name": "default"}
    return entry


HEADER = """\
# GENERATED from flows/deployments.py by `python -m flows.deployments > deploy/prefect.yaml`;
# tests/deploy/test_prefect_yaml.py fails when the two disagree. Edit flows/deployments.py.
#
# For `prefect deploy --all` with a process work pool named "eras" and `prefect worker start
# --pool eras`; `eras worker` serves the same deployments from code instead. poll-ehr is only
# needed where the EHR is polled rather than pushing subscriptions.
"""


def prefect_yaml() -> str:
    document = {
        "name": "eras-engine",
        "prefect-version": "3.8.8",
        "pull": [{"prefect.deployments.steps.set_working_directory":
                  {"directory": "{{ $ERAS_HOME }}"}}],
        "deployments": [_yaml_entry(d) for d in DEPLOYMENTS],
    }
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(prefect_yaml())
