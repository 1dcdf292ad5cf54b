"""The Prefect flows run for real (one session-wide test harness) and retry only temporary errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prefect.states import Completed, Failed
from prefect.testing.utilities import prefect_test_harness
from sqlmodel import select

from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirFatalError, FhirTemporaryError
from flows.prefect_flows import only_temporary, process_events, tick
from store.db import make_engine, session_scope
from store.models import InboxEvent
from tests.api.conftest import api_app
from tests.flows.test_runtime_e2e import AUTH, create_all, task_keys, timeline


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.parametrize(("error", "retry"), [
    (FhirTemporaryError("EHR overloaded", status=503), True),
    (FhirFatalError("bad request", status=400), False),
    (ValueError("a bug"), False),
])
def test_only_temporary_retries_temporary_errors(error: Exception, retry: bool) -> None:
    assert only_temporary(None, None, Failed(data=error)) is retry


def test_only_temporary_does_not_retry_success() -> None:
    assert only_temporary(None, None, Completed(data=1)) is False


async def test_process_events_flow_drains_the_inbox(prefect_harness, fhir_sandbox, tmp_path,
                                                   new_patient_id, monkeypatch) -> None:
    # Its own database: tick() re-evaluates every due enrolment, not only this test's.
    db_url = f"sqlite:///{tmp_path / 'flows.db'}"
    monkeypatch.setenv("ERAS_DATABASE_URL", db_url)
    monkeypatch.setenv("ERAS_FHIR_BASE_URL", fhir_sandbox.base_url)
    app = api_app(db_url)
    async with app.router.lifespan_context(app), FhirClient(fhir_sandbox.base_url) as client, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://eras.test") as api:
        saved = await create_all(client, *timeline(new_patient_id))
        response = await api.post("/fhir/notifications/sub-a", json=saved[-1], headers=AUTH)
        assert response.status_code == 200
        counts = await process_events()
        ticked = await tick()
        with session_scope(make_engine(db_url)) as session:
            statuses = {e.status for e in session.exec(select(InboxEvent))}
        keys = await task_keys(client, new_patient_id)
    assert counts["claimed"] == 1 and counts["applied"] == 1
    assert statuses == {"done"}
    assert any(":patient_education:" in k for k in keys)
    assert isinstance(ticked, int)


async def test_flow_runs_share_the_process_runtime(prefect_harness, fhir_sandbox, tmp_path,
                                                   monkeypatch) -> None:
    from flows import process_runtime as module
    from flows.prefect_flows import audit_report_flow, reminders
    from flows.settings import Settings

    opened: list[bool] = []
    real_open = module.open_runtime

    def counting_open(settings, *, migrate):  # type: ignore[no-untyped-def]
        opened.append(migrate)
        return real_open(settings, migrate=migrate)

    monkeypatch.setattr(module, "open_runtime", counting_open)
    monkeypatch.setenv("ERAS_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    monkeypatch.setenv("ERAS_FHIR_BASE_URL", fhir_sandbox.base_url)
    async with module.process_runtime(Settings(), migrate=True):
        await process_events()
        await tick()
        await reminders()
    assert opened == [True]  # once for the process (migrated then), reused by three flow runs
    # Without a process Runtime (a Runner's subprocess), a flow run opens one for all its
    # tasks, and does not migrate: the worker that started it did.
    await audit_report_flow(directory=str(tmp_path / "reports"))
    assert opened == [True, False]
