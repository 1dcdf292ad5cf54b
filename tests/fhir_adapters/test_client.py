"""FhirClient behaviour on the wire: retries, typed errors, paging and write headers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx
from fastapi import FastAPI, Request

from fhir_adapters.auth import BearerTokenAuth
from fhir_adapters.client import FhirClient, ServerType, detect_server_type
from fhir_adapters.errors import (
    FhirAuthError,
    FhirConflictError,
    FhirError,
    FhirFatalError,
    FhirTemporaryError,
)

BASE = "https://ehr.example/fhir"
PATIENT = {"resourceType": "Patient", "id": "p1"}


def _outcome(text: str) -> dict:
    issue = {"severity": "error", "code": "invalid", "diagnostics": text}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _page(ids: list[str], next_url: str | None) -> dict:
    bundle: dict = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Task", "id": i}} for i in ids],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


@respx.mock
async def test_client_503_twice_then_200_retries(sleeps) -> None:
    respx.get(f"{BASE}/Patient/p1").mock(
        side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200, json=PATIENT)]
    )
    async with FhirClient(BASE, sleep=sleeps, backoff_base=1, backoff_max=10) as client:
        assert await client.read("Patient", "p1") == PATIENT
    assert client.round_trips == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1
    assert 0 <= sleeps[1] <= 2


@respx.mock
async def test_client_429_retry_after_seconds_waits(sleeps) -> None:
    respx.get(f"{BASE}/Patient/p1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(200, json=PATIENT),
        ]
    )
    async with FhirClient(BASE, sleep=sleeps) as client:
        await client.read("Patient", "p1")
    assert sleeps == [2]


@respx.mock
async def test_client_retry_after_http_date_waits_and_is_capped(sleeps) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    respx.get(f"{BASE}/Patient/p1").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": later}),
            httpx.Response(200, json=PATIENT),
        ]
    )
    async with FhirClient(BASE, sleep=sleeps, backoff_max=30) as client:
        await client.read("Patient", "p1")
    assert sleeps == [30]


@respx.mock
async def test_client_400_outcome_raises_fatal_without_retry(sleeps) -> None:
    respx.post(f"{BASE}/Task").respond(400, json=_outcome("Task.status: unknown code 'bogus'"))
    async with FhirClient(BASE, sleep=sleeps) as client:
        with pytest.raises(FhirFatalError) as caught:
            await client.create({"resourceType": "Task", "status": "bogus"})
    error = caught.value
    assert str(error) == "FHIR server rejected POST /Task (400): Task.status: unknown code 'bogus'"
    assert error.status == 400
    assert error.url == "/Task"
    assert error.issues[0]["code"] == "invalid"
    assert not isinstance(error, FhirTemporaryError)
    assert client.round_trips == 1
    assert sleeps == []


@respx.mock
async def test_client_5xx_hiding_fatal_error_raises_temporary_after_retries(sleeps) -> None:
    respx.post(f"{BASE}/Task").respond(500, json=_outcome("NullPointerException"))
    async with FhirClient(BASE, sleep=sleeps, max_retries=2) as client:
        with pytest.raises(FhirTemporaryError, match="NullPointerException"):
            await client.create({"resourceType": "Task", "status": "ready"})
    assert client.round_trips == 3


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (408, FhirTemporaryError),
        (429, FhirTemporaryError),
        (502, FhirTemporaryError),
        (403, FhirFatalError),
        (404, FhirFatalError),
        (422, FhirFatalError),
        (409, FhirConflictError),
        (412, FhirConflictError),
    ],
)
@respx.mock
async def test_client_status_maps_to_error_type(status: int, error_type: type) -> None:
    respx.get(f"{BASE}/Patient/p1").respond(status)
    async with FhirClient(BASE, max_retries=0) as client:
        with pytest.raises(FhirError) as caught:
            await client.read("Patient", "p1")
    assert type(caught.value) is error_type
    assert caught.value.status == status
    assert str(caught.value).endswith(f"GET /Patient/p1 ({status})")


@respx.mock
async def test_client_timeout_raises_temporary_after_retries(sleeps) -> None:
    respx.get(f"{BASE}/Patient/p1").mock(side_effect=httpx.ReadTimeout("slow"))
    async with FhirClient(BASE, sleep=sleeps, max_retries=3) as client:
        with pytest.raises(FhirTemporaryError, match="timed out"):
            await client.read("Patient", "p1")
    assert client.round_trips == 4
    assert len(sleeps) == 3


async def test_client_connection_refused_raises_temporary(closed_port_url, sleeps) -> None:
    async with FhirClient(f"{closed_port_url}/fhir", sleep=sleeps, max_retries=1) as client:
        with pytest.raises(FhirTemporaryError, match="Could not reach the FHIR server") as caught:
            await client.read("Patient", "p1")
    # The operator must see which server: the base URL, not just the path.
    assert f"at {closed_port_url}/fhir/ for GET /Patient/p1" in str(caught.value)
    assert client.round_trips == 2


@pytest.mark.parametrize(
    "body",
    ["{not json", '["a list"]', '{"id": "no-resource-type"}', ""],
    ids=["not-json", "list", "no-resource-type", "empty"],
)
@respx.mock
async def test_client_malformed_200_raises_fatal(body: str, sleeps) -> None:
    respx.get(f"{BASE}/Patient/p1").respond(200, text=body)
    async with FhirClient(BASE, sleep=sleeps) as client:
        with pytest.raises(FhirFatalError, match="malformed response to GET /Patient/p1"):
            await client.read("Patient", "p1")
    assert client.round_trips == 1


@respx.mock
async def test_client_search_follows_next_links_across_pages() -> None:
    # respx tries routes in order and params match as a subset: most specific first.
    respx.get(f"{BASE}/Task", params={"page": "3"}).respond(json=_page(["t4"], None))
    respx.get(f"{BASE}/Task", params={"page": "2"}).respond(
        json=_page(["t3"], f"{BASE}/Task?status=ready&page=3")
    )
    respx.get(f"{BASE}/Task", params={"status": "ready"}).respond(
        json=_page(["t1", "t2"], f"{BASE}/Task?status=ready&page=2")
    )
    async with FhirClient(BASE) as client:
        tasks = await client.search("Task", {"status": "ready"})
    assert [t["id"] for t in tasks] == ["t1", "t2", "t3", "t4"]
    assert client.round_trips == 3


@respx.mock
async def test_client_search_next_link_to_other_origin_refused() -> None:
    respx.get(f"{BASE}/Task").respond(json=_page(["t1"], "https://evil.example/fhir/Task?p=2"))
    other = respx.get("https://evil.example/fhir/Task")
    async with FhirClient(BASE) as client:
        with pytest.raises(FhirFatalError, match="another server"):
            await client.search("Task", {"status": "ready"})
    assert not other.called


@respx.mock
async def test_client_search_more_pages_than_allowed_raises_fatal() -> None:
    respx.get(f"{BASE}/Task").respond(json=_page(["t1"], f"{BASE}/Task?page=again"))
    async with FhirClient(BASE) as client:
        with pytest.raises(FhirFatalError, match="more than 3 pages"):
            await client.search("Task", max_pages=3)
    assert client.round_trips == 3


@respx.mock
async def test_client_update_412_raises_conflict_with_current_etag() -> None:
    respx.put(f"{BASE}/Task/t1").respond(
        412, headers={"ETag": 'W/"7"'}, json=_outcome("version conflict")
    )
    async with FhirClient(BASE) as client:
        with pytest.raises(FhirConflictError) as caught:
            await client.update({"resourceType": "Task", "id": "t1"}, if_match="3")
    assert caught.value.current_etag == 'W/"7"'
    assert caught.value.status == 412
    assert respx.calls.last.request.headers["If-Match"] == 'W/"3"'


@respx.mock
async def test_client_update_returns_resource_and_etag() -> None:
    stored = {"resourceType": "Task", "id": "t1", "meta": {"versionId": "4"}}
    route = respx.put(f"{BASE}/Task/t1").respond(200, json=stored, headers={"ETag": 'W/"4"'})
    async with FhirClient(BASE) as client:
        resource, etag = await client.update({"resourceType": "Task", "id": "t1"})
    assert (resource, etag) == (stored, 'W/"4"')
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/fhir+json"
    assert request.headers["Prefer"] == "return=representation"
    assert "If-Match" not in request.headers


@respx.mock
async def test_client_read_keeps_etag_version_in_meta() -> None:
    respx.get(f"{BASE}/Patient/p1").respond(json=PATIENT, headers={"ETag": 'W/"9"'})
    async with FhirClient(BASE) as client:
        patient = await client.read("Patient", "p1")
    assert patient["meta"]["versionId"] == "9"


@respx.mock
async def test_client_create_sends_if_none_exist() -> None:
    created = {"resourceType": "Task", "id": "t9", "status": "ready"}
    route = respx.post(f"{BASE}/Task").respond(201, json=created)
    async with FhirClient(BASE) as client:
        result = await client.create(
            {"resourceType": "Task", "status": "ready"}, if_none_exist="identifier=urn:x|1"
        )
    assert result == created
    request = route.calls.last.request
    assert request.headers["If-None-Exist"] == "identifier=urn:x|1"
    assert json.loads(request.content) == {"resourceType": "Task", "status": "ready"}


@respx.mock
async def test_client_create_empty_body_reads_location() -> None:
    respx.post(f"{BASE}/Task").respond(201, headers={"Location": f"{BASE}/Task/t9/_history/1"})
    respx.get(f"{BASE}/Task/t9").respond(json={"resourceType": "Task", "id": "t9"})
    async with FhirClient(BASE) as client:
        result = await client.create({"resourceType": "Task", "status": "ready"})
    assert result["id"] == "t9"
    assert client.round_trips == 2


@respx.mock
async def test_client_transaction_posts_bundle_to_base() -> None:
    response = {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
    route = respx.post(f"{BASE}/").respond(json=response)
    async with FhirClient(BASE) as client:
        assert await client.transaction({"resourceType": "Bundle", "entry": []}) == response
        with pytest.raises(ValueError, match="Expected a batch Bundle"):
            await client.batch({"resourceType": "Bundle", "type": "transaction"})
    assert json.loads(route.calls.last.request.content)["type"] == "transaction"


@respx.mock
async def test_client_401_without_auth_raises_auth_error() -> None:
    respx.get(f"{BASE}/Patient/p1").respond(401)
    async with FhirClient(BASE) as client:
        with pytest.raises(FhirAuthError, match="refused our credentials for GET /Patient/p1"):
            await client.read("Patient", "p1")
    assert client.round_trips == 1


@respx.mock
async def test_client_error_and_logs_omit_query_string(caplog, sleeps) -> None:
    respx.get(f"{BASE}/Patient").respond(404)
    caplog.set_level(logging.DEBUG, logger="fhir_adapters.client")
    async with FhirClient(BASE, sleep=sleeps) as client:
        with pytest.raises(FhirFatalError) as caught:
            await client.search("Patient", {"identifier": "MRN|123456"})
    assert "123456" not in str(caught.value)
    assert caught.value.url == "/Patient"
    assert "123456" not in caplog.text
    assert "FHIR GET Patient -> 404" in caplog.text


@respx.mock
async def test_client_epic_sends_client_id_header() -> None:
    auth = BearerTokenAuth("abc")
    auth.client_id = "epic-app"
    route = respx.get(f"{BASE}/metadata").respond(json={"resourceType": "CapabilityStatement"})
    async with FhirClient(BASE, auth=auth, server_type=ServerType.EPIC) as client:
        await client.capabilities()
    assert route.calls.last.request.headers["Epic-Client-ID"] == "epic-app"


def test_detect_server_type_reads_capability_statement() -> None:
    assert detect_server_type({"software": {"name": "Epic"}}) is ServerType.EPIC
    assert detect_server_type({"publisher": "Oracle Health"}) is ServerType.CERNER
    assert detect_server_type({"software": {"name": "Medplum"}}) is ServerType.MEDPLUM
    assert detect_server_type({}) is ServerType.GENERIC


@respx.mock
async def test_client_read_invalid_id_refused() -> None:
    async with FhirClient(BASE) as client:
        with pytest.raises(ValueError, match="Not a FHIR resource id"):
            await client.read("Patient", "../Observation")
    assert client.round_trips == 0


async def test_client_transport_serves_asgi_app() -> None:
    app = FastAPI()

    @app.post("/fhir/Task")
    async def create_task(request: Request) -> dict:
        body = await request.json()
        return body | {"id": "t1", "contentType": request.headers["content-type"]}

    transport = httpx.ASGITransport(app=app)
    async with FhirClient("http://fhir.test/fhir", transport=transport) as client:
        task = await client.create({"resourceType": "Task", "status": "ready"})
    assert task["id"] == "t1"
    assert task["contentType"] == "application/fhir+json"
