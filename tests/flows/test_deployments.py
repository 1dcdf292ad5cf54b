"""The scheduled work is defined once: prefect.yaml, `eras worker` and `eras serve` agree."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect.runner import Runner

from flows import prefect_flows as pf
from flows.deployments import DEPLOYMENTS, Deployment, add_to_runner, deployments, prefect_yaml
from flows.loops import Loops
from flows.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
LONDON = ZoneInfo("Europe/London")


def _loops(**kwargs: Any) -> Loops:
    rt = SimpleNamespace(tz=LONDON, clock=lambda: datetime.now(UTC))
    return Loops(cast(Runtime, rt), worker="test", **kwargs)


def test_prefect_yaml_is_generated_from_the_definitions() -> None:
    on_disk = (ROOT / "deploy" / "prefect.yaml").read_text(encoding="utf-8")
    assert on_disk == prefect_yaml(), "run: python -m flows.deployments > deploy/prefect.yaml"
    entries = yaml.safe_load(on_disk)["deployments"]
    assert [e["name"] for e in entries] == [d.name for d in DEPLOYMENTS]
    assert all("triggers" not in e for e in entries)  # nothing emits an inbox event to Prefect


def test_exclusive_deployments_are_the_ones_that_must_not_overlap() -> None:
    limited = {d.name for d in DEPLOYMENTS if d.concurrency() is not None}
    assert limited == {"tick", "reminders", "poll-ehr", "audit-report"}
    assert all(d.concurrency().limit == 1 for d in DEPLOYMENTS if d.exclusive)  # type: ignore[union-attr]


def test_audit_report_is_scheduled_and_poll_only_where_polling() -> None:
    assert {d.name for d in deployments(polling=False)} == {"process-events", "tick", "reminders",
                                                            "audit-report"}
    assert "poll-ehr" in {d.name for d in deployments(polling=True)}


async def test_a_runner_that_pauses_on_shutdown_is_refused() -> None:
    with pytest.raises(ValueError, match="must not pause"):
        await add_to_runner(Runner(pause_on_shutdown=True), timezone="UTC", polling=False)


@pytest.mark.parametrize(("now", "seconds"), [
    # 00:30 UTC in July is 01:30 BST: the 02:00 BST run is 30 minutes away.
    (datetime(2026, 7, 1, 0, 30, tzinfo=UTC), 30 * 60),
    # 01:30 UTC in July is 02:30 BST: tomorrow's 02:00 BST is 23 h 30 min away.
    (datetime(2026, 7, 1, 1, 30, tzinfo=UTC), (23 * 60 + 30) * 60),
    # 01:30 UTC in January is 01:30 GMT: 30 minutes.
    (datetime(2026, 1, 15, 1, 30, tzinfo=UTC), 30 * 60),
])
def test_serve_runs_the_audit_report_at_2am_hospital_time(now: datetime, seconds: int) -> None:
    audit = next(d for d in DEPLOYMENTS if d.name == "audit-report")
    assert _loops().next_delay(audit, now) == seconds


def test_serve_tick_interval_override() -> None:
    tick = next(d for d in DEPLOYMENTS if d.name == "tick")
    assert _loops().next_delay(tick, datetime.now(UTC)) == 60
    assert _loops(intervals={"tick": 5}).next_delay(tick, datetime.now(UTC)) == 5


async def test_serve_runs_each_definition_on_its_interval_and_skips_disabled_ones() -> None:
    calls: list[str] = []

    async def work(_rt: Runtime, *, label: str) -> None:
        calls.append(label)

    on = Deployment("on", pf.tick, work, interval=0.05, parameters={"label": "on"})
    off = Deployment("off", pf.tick, work, interval=0.05, parameters={"label": "off"})
    loops = _loops(scheduled=[on, off], intervals={"off": None}, as_flow_runs=False,
                   drain_interval=3600)
    loops._drain = _idle  # type: ignore[method-assign]  # no database here: only the schedule
    loops.start()
    await asyncio.sleep(0.3)
    await loops.stop()
    assert calls.count("on") >= 3 and "off" not in calls


async def _idle() -> None:
    await asyncio.Event().wait()
