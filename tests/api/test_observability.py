"""/metrics, /healthz and /readyz through HTTP, and the JSON log format."""

from __future__ import annotations

import json
import logging
import sys

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirTemporaryError
from fhir_adapters.sandbox import FhirSandbox
from flows.logs import JsonFormatter
from flows.metrics import instrument_client
from store.db import session_scope
from store.models import DeliveryRecord
from store.scheduling import record_failure
from tests.api.conftest import api_app
from tests.utils.notifications import observation
from tests.utils.store_factories import T0, create_enrolment

AUTH_A = {"Authorization": "Bearer token-a"}


async def _metrics(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


async def test_metrics_count_the_store_backlog_parked_patients_and_deliveries(
        client: httpx.AsyncClient, app: FastAPI) -> None:
    before = await _metrics(client)
    with session_scope(app.state.engine) as session:
        enrolment = create_enrolment(session=session)
    patient = enrolment.patient_ref.removeprefix("Patient/")
    for _ in range(3):  # three new events waiting in the inbox (an enrolled patient's: they matter)
        stored = await client.post("/fhir/notifications/sub-a", json=observation(patient=patient),
                                   headers=AUTH_A)
        assert stored.status_code == 200
    with session_scope(app.state.engine) as session:
        record_failure(session=session, enrolment_id=enrolment.id, error="KeyError", at=T0, park_after=1)
        session.add(DeliveryRecord(action_key="k-metrics", kind="reminder", level=0, role="nurse",
                                   channel="webhook", ok=True, attempts=1, at=T0))
    after = await _metrics(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("eras_inbox_backlog", status="pending") == 3
    assert delta("eras_parked_patients") == 1
    assert delta("eras_reminders_delivered_total", channel="webhook", result="ok") == 1
    assert ("eras_events_processed_total", ()) in after
    assert ("eras_events_failed_total", ()) in after
    assert any(name == "eras_apply_seconds_bucket" for name, _ in after)


async def test_metrics_count_fhir_calls_by_outcome(client: httpx.AsyncClient,
                                                   fhir_sandbox: FhirSandbox) -> None:
    before = await _metrics(client)
    async with FhirClient(fhir_sandbox.base_url, max_retries=0) as ehr:
        instrument_client(ehr)
        await ehr.search("Patient", {"_id": "metrics-probe"})
    async with FhirClient("http://127.0.0.1:9/fhir", max_retries=0, timeout=2) as down:
        instrument_client(down)
        with pytest.raises(FhirTemporaryError):
            await down.search("Patient", {"_id": "x"})
    after = await _metrics(client)
    ok = ("eras_fhir_calls_total", (("method", "GET"), ("outcome", "2xx")))
    unreachable = ("eras_fhir_calls_total", (("method", "GET"), ("outcome", "unreachable")))
    assert after[ok] - before.get(ok, 0.0) == 1
    assert after[unreachable] - before.get(unreachable, 0.0) == 1


async def test_healthz_is_alive_without_dependencies(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def _point_ehr(app: FastAPI, base_url: str) -> None:
    """The app's configured EHR (ERAS_FHIR_BASE_URL), as a deployment would set it."""
    settings = app.state.settings
    app.state.settings = settings.model_copy(
        update={"fhir": settings.fhir.model_copy(update={"base_url": base_url})})


async def test_readyz_ready_when_database_and_ehr_answer(client: httpx.AsyncClient, app: FastAPI,
                                                         fhir_sandbox: FhirSandbox) -> None:
    _point_ehr(app, fhir_sandbox.base_url)
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "ehr": "ok"}


async def test_readyz_503_names_the_unreachable_ehr(client: httpx.AsyncClient, app: FastAPI) -> None:
    _point_ehr(app, "http://127.0.0.1:9/fhir")  # nothing listens on the discard port
    response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["ehr"].startswith("unreachable")


async def test_readyz_503_names_the_unreachable_database(client: httpx.AsyncClient, app: FastAPI,
                                                         fhir_sandbox: FhirSandbox) -> None:
    from store.db import make_engine

    _point_ehr(app, fhir_sandbox.base_url)
    working = app.state.engine
    app.state.engine = make_engine("postgresql://postgres@127.0.0.1:9/none")
    try:
        response = await client.get("/readyz")
    finally:
        app.state.engine.dispose()
        app.state.engine = working
    assert response.status_code == 503
    assert response.json()["database"].startswith("unreachable")
    assert response.json()["ehr"] == "ok"


async def test_readyz_probes_through_one_client_that_still_sees_the_ehr_go_down(db_url: str) -> None:
    """Probes every 10 s (deploy/k8s) share one client, closed with the app, instead of building
    a TLS context each; a kept-alive connection to an EHR that has since stopped still reads
    as unreachable."""
    app = api_app(db_url)
    with FhirSandbox() as ehr:
        async with app.router.lifespan_context(app):
            _point_ehr(app, ehr.base_url)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
                up = [(await http.get("/readyz")).status_code for _ in range(2)]
                probe = app.state.probe_http
                ehr.stop()
                down = await http.get("/readyz")
                reused = app.state.probe_http is probe
        closed = probe.is_closed
    assert up == [200, 200]
    assert down.status_code == 503 and down.json()["ehr"].startswith("unreachable")
    assert (reused, closed) == (True, True)


def test_json_log_lines_carry_fixed_fields_only() -> None:
    record = logging.LogRecord("flows.drain", logging.ERROR, __file__, 1,
                               "apply failed for Patient/%s: %s", ("pt-1", "KeyError"), None)
    record.clinical = {"pain_score": 9}  # an `extra` a library might attach: never written
    try:
        raise KeyError("x")
    except KeyError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert set(line) == {"ts", "level", "logger", "message", "exc_type", "exc"}
    assert line["message"] == "apply failed for Patient/pt-1: KeyError"
    assert (line["level"], line["logger"], line["exc_type"]) == ("ERROR", "flows.drain", "KeyError")
    assert "pain_score" not in json.dumps(line)
