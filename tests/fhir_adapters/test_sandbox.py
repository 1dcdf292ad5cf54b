"""The FHIR sandbox server behaves like an EHR's FHIR R4 API (tested over real HTTP)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from fhir_adapters.sandbox import FhirSandbox, FhirSandboxError

FHIR_JSON = {"Content-Type": "application/fhir+json"}
SEED_MRN = "seed-mrn-0001"


def _seed_bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b7f7ad4-3c4c-4f6a-9a53-8f8b2a3f0c11",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:test:mrn", "value": SEED_MRN}],
                },
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seeds") / "patients.json"
    path.write_text(json.dumps(_seed_bundle()))
    return path


@pytest.fixture(scope="module")
def sandbox(seed_file: Path) -> Iterator[FhirSandbox]:
    with FhirSandbox(seeds=[seed_file]) as server:
        yield server


@pytest.fixture(scope="module")
def client(sandbox: FhirSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, headers=FHIR_JSON, timeout=10) as http:
        yield http


def _system() -> str:
    """A fresh identifier system, so each test sees only its own resources."""
    return f"urn:test:{uuid.uuid4()}"


def _task(system: str, value: str, status: str = "ready") -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "identifier": [{"system": system, "value": value}],
        "status": status,
        "intent": "order",
    }


def _is_outcome(response: httpx.Response) -> bool:
    return response.json()["resourceType"] == "OperationOutcome"


def test_create_returns_201_with_location_and_etag(client: httpx.Client) -> None:
    response = client.post("Task", json=_task(_system(), "a"))

    body = response.json()
    version = body["meta"]["versionId"]
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["location"] == (f"{client.base_url}Task/{body['id']}/_history/{version}")
    assert response.headers["etag"] == f'W/"{version}"'
    assert "last-modified" in response.headers


def test_create_ignores_client_id_and_meta(client: httpx.Client) -> None:
    resource = _task(_system(), "a") | {
        "id": "client-chosen",
        "meta": {"versionId": "7", "lastUpdated": "2000-01-01T00:00:00Z"},
    }

    body = client.post("Task", json=resource).json()

    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] != "7"
    assert body["meta"]["lastUpdated"] > "2020"


def test_read_returns_resource_with_etag(client: httpx.Client) -> None:
    created = client.post("Task", json=_task(_system(), "a")).json()

    response = client.get(f"Task/{created['id']}")

    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    assert response.headers["etag"] == f'W/"{created["meta"]["versionId"]}"'


def test_read_unknown_id_returns_404_outcome(client: httpx.Client) -> None:
    response = client.get("Task/does-not-exist")

    assert response.status_code == 404
    assert _is_outcome(response)


def test_update_with_stale_if_match_returns_412_outcome(client: httpx.Client) -> None:
    created = client.post("Task", json=_task(_system(), "a")).json()
    client.put(f"Task/{created['id']}", json=created | {"status": "in-progress"})

    response = client.put(
        f"Task/{created['id']}",
        json=created | {"status": "completed"},
        headers={"If-Match": f'W/"{created["meta"]["versionId"]}"'},
    )

    assert response.status_code == 412
    assert _is_outcome(response)
    assert client.get(f"Task/{created['id']}").json()["status"] == "in-progress"


def test_update_with_current_if_match_returns_200_and_new_etag(client: httpx.Client) -> None:
    created = client.post("Task", json=_task(_system(), "a")).json()
    old_etag = f'W/"{created["meta"]["versionId"]}"'

    response = client.put(
        f"Task/{created['id']}",
        json=created | {"status": "completed"},
        headers={"If-Match": old_etag},
    )

    assert response.status_code == 200
    assert response.headers["etag"] != old_etag
    assert response.json()["status"] == "completed"


def test_update_of_new_id_returns_201(client: httpx.Client) -> None:
    new_id = f"t-{uuid.uuid4()}"

    response = client.put(f"Task/{new_id}", json=_task(_system(), "a") | {"id": new_id})

    assert response.status_code == 201
    assert response.headers["location"].startswith(f"{client.base_url}Task/{new_id}/_history/")


def test_conditional_create_twice_keeps_one_resource(client: httpx.Client) -> None:
    system = _system()
    headers = {"If-None-Exist": f"identifier={system}|a"}

    first = client.post("Task", json=_task(system, "a"), headers=headers)
    second = client.post("Task", json=_task(system, "a"), headers=headers)

    found = client.get("Task", params={"identifier": f"{system}|a"}).json()
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert found["total"] == 1


def test_transaction_resolves_urn_uuid_references(client: httpx.Client) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    task = _task(_system(), "a") | {"for": {"reference": patient_urn}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": task,
                "request": {"method": "POST", "url": "Task"},
            },
            {
                "fullUrl": patient_urn,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }

    response = client.post("", json=bundle)

    entries = response.json()["entry"]
    patient_location = entries[1]["response"]["location"]
    stored_task = client.get(entries[0]["response"]["location"]).json()
    assert response.status_code == 200
    assert response.json()["type"] == "transaction-response"
    assert [e["response"]["status"] for e in entries] == ["201 Created", "201 Created"]
    assert all(e["response"]["etag"].startswith('W/"') for e in entries)
    assert stored_task["for"]["reference"] == "/".join(patient_location.split("/")[:2])


def _conditional_bundle(system: str, count: int) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": _task(system, str(i)),
                "request": {"method": "POST", "url": "Task", "ifNoneExist": f"identifier={system}|{i}"},
            }
            for i in range(count)
        ],
    }


def test_transaction_conditional_create_replayed_creates_nothing(client: httpx.Client) -> None:
    system = _system()

    first = client.post("", json=_conditional_bundle(system, 12)).json()
    replay = client.post("", json=_conditional_bundle(system, 12)).json()

    first_ids = [e["resource"]["id"] for e in first["entry"]]
    assert {e["response"]["status"] for e in first["entry"]} == {"201 Created"}
    assert {e["response"]["status"] for e in replay["entry"]} == {"200 OK"}
    assert [e["resource"]["id"] for e in replay["entry"]] == first_ids
    assert client.get("Task", params={"identifier": f"{system}|"}).json()["total"] == 12


def test_transaction_with_failing_entry_rolls_back(client: httpx.Client) -> None:
    system = _system()
    existing = client.post("Task", json=_task(system, "old")).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _task(system, "new"), "request": {"method": "POST", "url": "Task"}},
            {
                "resource": existing | {"status": "completed"},
                "request": {"method": "PUT", "url": f"Task/{existing['id']}", "ifMatch": 'W/"stale"'},
            },
        ],
    }

    response = client.post("", json=bundle)

    assert response.status_code == 412
    assert _is_outcome(response)
    assert client.get("Task", params={"identifier": f"{system}|new"}).json()["total"] == 0


def test_batch_reports_each_entry_status(client: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": _task(_system(), "a"), "request": {"method": "POST", "url": "Task"}},
            {"request": {"method": "GET", "url": "Task/does-not-exist"}},
        ],
    }

    response = client.post("", json=bundle)

    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert response.status_code == 200
    assert statuses == ["201 Created", "404 Not Found"]


def test_search_by_identifier_token_finds_only_match(client: httpx.Client) -> None:
    system = _system()
    wanted = client.post("Task", json=_task(system, "wanted")).json()
    client.post("Task", json=_task(system, "other"))

    bundle = client.get("Task", params={"identifier": f"{system}|wanted"}).json()

    assert bundle["type"] == "searchset"
    assert [e["resource"]["id"] for e in bundle["entry"]] == [wanted["id"]]
    assert bundle["entry"][0]["fullUrl"] == f"{client.base_url}Task/{wanted['id']}"


def test_search_paging_with_count_follows_next_links(client: httpx.Client) -> None:
    system = _system()
    created = {client.post("Task", json=_task(system, str(i))).json()["id"] for i in range(5)}

    url: str | None = str(client.build_request("GET", "Task").url)
    params: dict[str, str] | None = {"identifier": f"{system}|", "_count": "2"}
    pages: list[list[str]] = []
    while url:
        bundle = client.get(url, params=params).json()
        pages.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        params = None

    assert [len(page) for page in pages] == [2, 2, 1]
    assert {rid for page in pages for rid in page} == created


def test_search_last_updated_gt_returns_only_newer(client: httpx.Client) -> None:
    system = _system()
    older = client.post("Task", json=_task(system, "older")).json()
    newer = client.post("Task", json=_task(system, "newer")).json()

    bundle = client.get(
        "Task",
        params={"identifier": f"{system}|", "_lastUpdated": f"gt{older['meta']['lastUpdated']}"},
    ).json()

    assert [e["resource"]["id"] for e in bundle["entry"]] == [newer["id"]]


def test_search_include_adds_referenced_patient(client: httpx.Client) -> None:
    patient = client.post("Patient", json={"resourceType": "Patient"}).json()
    system = _system()
    task = _task(system, "a") | {"for": {"reference": f"Patient/{patient['id']}"}}
    client.post("Task", json=task)

    bundle = client.get("Task", params={"identifier": f"{system}|a", "_include": "Task:patient"}).json()

    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]]
    assert modes == [("Task", "match"), ("Patient", "include")]


def test_search_summary_count_returns_total_only(client: httpx.Client) -> None:
    system = _system()
    for i in range(3):
        client.post("Task", json=_task(system, str(i)))

    bundle = client.get("Task", params={"identifier": f"{system}|", "_summary": "count"}).json()

    assert bundle["total"] == 3
    assert "entry" not in bundle


def test_delete_then_read_returns_410(client: httpx.Client) -> None:
    created = client.post("Task", json=_task(_system(), "a")).json()

    deleted = client.delete(f"Task/{created['id']}")
    read = client.get(f"Task/{created['id']}")

    assert deleted.status_code == 204
    assert read.status_code == 410
    assert _is_outcome(read)


def test_metadata_is_r4_capability_statement(client: httpx.Client) -> None:
    body = client.get("metadata").json()

    statement = CapabilityStatement.model_validate(body)
    assert statement.rest is not None
    rest = statement.rest[0]
    assert rest.resource is not None
    assert rest.interaction is not None
    task = next(r for r in rest.resource if r.type == "Task")
    assert task.interaction is not None
    assert statement.fhirVersion == "4.0.1"
    assert {"transaction", "batch"} <= {i.code for i in rest.interaction}
    assert {"read", "create", "update", "search-type", "delete"} <= {i.code for i in task.interaction}


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("GET", "NotAType", None, 404),
        ("POST", "NotAType", b'{"resourceType": "NotAType"}', 404),
        ("POST", "Task", b'{"resourceType": "Task", "status": ', 400),
        ("POST", "Task", b'{"resourceType": "Task", "status": "ready", "bogus": 1}', 400),
        ("POST", "Task", b'{"resourceType": "Patient"}', 400),
        ("POST", "", b'{"resourceType": "Bundle", "type": "collection"}', 400),
        ("GET", "Task?not-a-param=1", None, 400),
        ("GET", "Task?subject:Patient.name=x", None, 400),
    ],
)
def test_bad_request_returns_4xx_outcome(
    client: httpx.Client, method: str, path: str, content: bytes | None, status: int
) -> None:
    response = client.request(method, path, content=content)

    assert response.status_code == status
    assert _is_outcome(response)


def test_seed_bundle_loaded_at_start(client: httpx.Client) -> None:
    bundle = client.get("Patient", params={"identifier": f"urn:test:mrn|{SEED_MRN}"}).json()

    assert bundle["total"] == 1


def test_sandbox_restart_keeps_port_and_serves_again(seed_file: Path) -> None:
    with FhirSandbox(seeds=[seed_file]) as server:
        base_url = server.base_url
        httpx.post(f"{base_url}/Task", json=_task(_system(), "a"), headers=FHIR_JSON)

        server.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base_url}/metadata")
        server.start()

        tasks = httpx.get(f"{base_url}/Task").json()
        patients = httpx.get(f"{base_url}/Patient").json()
        assert server.base_url == base_url
        assert tasks["total"] == 0
        assert patients["total"] == 1


def test_sandbox_reset_empties_store(seed_file: Path) -> None:
    with FhirSandbox(seeds=[seed_file]) as server:
        server.reset()

        assert httpx.get(f"{server.base_url}/Patient").json()["total"] == 0


def test_sandbox_start_with_bad_seed_raises_with_stderr(tmp_path: Path) -> None:
    seed = tmp_path / "bad.json"
    seed.write_text('{"resourceType": "Bundle", "type": "collection"}')

    with pytest.raises(FhirSandboxError, match="seed"):
        FhirSandbox(seeds=[seed]).start()


def test_sandbox_start_with_failing_npm_ci_raises_npm_output(tmp_path: Path) -> None:
    server_dir = tmp_path / "fhir-sandbox"
    server_dir.mkdir()
    (server_dir / "server.mjs").write_text("")
    (server_dir / "package.json").write_text('{"name": "no-lockfile", "version": "0.0.0"}')

    with pytest.raises(FhirSandboxError, match="npm ci"):
        FhirSandbox(server_dir=server_dir).start()
