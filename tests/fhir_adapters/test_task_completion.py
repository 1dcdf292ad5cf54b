"""The EHR: a Task completed after its window reads back with its completion time, so the
engine can call it done late (the planned close written with the Task is no completion)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fhir_adapters.client import FhirClient
from fhir_adapters.evidence import completed_task
from fhir_adapters.facts import parse_resource, task_state
from tests.fhir_adapters.test_writeback import ACTION, NOW, TASK_SYSTEM, make_task

H = timedelta(hours=1)


@pytest.mark.parametrize("completed_after", [2 * H, 6 * H])
async def test_task_completion_time_survives_the_ehr(fhir_sandbox, completed_after) -> None:
    # ACTION's window: opens 08:00, due 09:00, closes 12:00 (NOW + 4 h). The nurse completes
    # the Task at 10:00 (in the window) or 14:00 (after it): the time read back is that instant.
    assert ACTION.closes == NOW + 4 * H
    task = {**make_task(), "for": {"reference": "Patient/p-task-time"}}
    async with FhirClient(fhir_sandbox.base_url) as ehr:
        written = await ehr.create(task)
        stored, _ = await ehr.update(completed_task(written, now=NOW + completed_after))
        read_back = await ehr.read("Task", stored["id"])
    state = task_state(parse_resource(read_back), TASK_SYSTEM)
    assert state is not None
    assert (state.action_key, state.status, state.at) == (ACTION.key, "completed",
                                                          NOW + completed_after)


def test_planned_task_has_no_execution_end() -> None:
    # Were the planned close (12:00) written as executionPeriod.end, a Task completed at 14:00
    # by an EHR that leaves executionPeriod alone would read back as completed at 12:00.
    assert "end" not in make_task().get("executionPeriod", {})
