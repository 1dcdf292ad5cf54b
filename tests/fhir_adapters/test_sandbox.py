"""The FHIR sandbox server behaves like an EHR's FHIR R4 API (tested over real HTTP)."""

from __future__ import annotations

import json
import random
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


# ---------------------------------------------------------------- indexed search


class _ScanningSandbox(FhirSandbox):
    """The same server with its search indexes switched off (`--no-index`): every search scans."""

    def _command(self) -> list[str]:
        return [*super()._command(), "--no-index"]


def _stats(client: httpx.Client) -> dict[str, Any]:
    """`GET $stats`: what the searches of the previous request examined."""
    response = client.get("$stats")
    assert response.status_code == 200
    stats: dict[str, Any] = {"search": []}
    for parameter in response.json()["parameter"]:
        if parameter["name"] == "search":
            stats["search"].append({p["name"]: _value(p) for p in parameter["part"]})
        else:
            stats[parameter["name"]] = _value(parameter)
    return stats


def _value(parameter: dict[str, Any]) -> Any:
    return next(v for k, v in parameter.items() if k.startswith("value"))


def _observation(
    patient: str | None, code: str, system: str = "http://loinc.org", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if patient is not None:
        resource["subject"] = {"reference": patient}
    return resource | extra


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _patients(client: httpx.Client, count: int) -> list[str]:
    refs = []
    for _ in range(count):
        patient_id = f"pt-{uuid.uuid4()}"
        client.put(f"Patient/{patient_id}", json={"resourceType": "Patient", "id": patient_id})
        refs.append(f"Patient/{patient_id}")
    return refs


def test_patient_search_examines_only_that_patients_resources(client: httpx.Client) -> None:
    alice, bob = _patients(client, 2)
    alice_ids = [client.post("Observation", json=_observation(alice, str(i))).json()["id"] for i in range(3)]
    for i in range(5):
        client.post("Observation", json=_observation(bob, str(i)))

    bundle = client.get("Observation", params={"patient": alice, "_count": "50"}).json()
    stats = _stats(client)

    assert _ids(bundle) == alice_ids
    assert stats["search"] == [
        {"resourceType": "Observation", "strategy": "compartment", "examined": 3, "matched": 3}
    ]
    assert stats["examined"] == 3
    assert stats["milliseconds"] >= 0


def test_conditional_create_examines_only_identifier_matches(client: httpx.Client) -> None:
    system = _system()
    client.post("", json=_conditional_bundle(system, 20))
    headers = {"If-None-Exist": f"identifier={system}|7"}

    response = client.post("Task", json=_task(system, "7"), headers=headers)
    stats = _stats(client)

    assert response.status_code == 200
    assert [(s["strategy"], s["examined"], s["matched"]) for s in stats["search"]] == [("identifier", 1, 1)]


def test_batch_of_patient_searches_examines_each_compartment(client: httpx.Client) -> None:
    alice, bob = _patients(client, 2)
    system = _system()
    client.post("Observation", json=_observation(alice, "1"))
    client.post("Task", json=_task(system, "a") | {"for": {"reference": alice}})
    client.post("Task", json=_task(system, "b") | {"for": {"reference": bob}})
    searches = [
        f"Observation?patient={alice}&code=http://loinc.org|1",
        f"Task?patient={alice}&identifier={system}|",
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": url}} for url in searches],
    }

    response = client.post("", json=bundle).json()
    stats = _stats(client)

    assert [e["resource"]["total"] for e in response["entry"]] == [1, 1]
    assert [(s["resourceType"], s["strategy"], s["examined"]) for s in stats["search"]] == [
        ("Observation", "compartment", 1),
        ("Task", "compartment", 1),
    ]


def test_update_that_moves_subject_moves_it_between_compartments(client: httpx.Client) -> None:
    alice, bob = _patients(client, 2)
    created = client.post("Observation", json=_observation(alice, "1")).json()

    client.put(f"Observation/{created['id']}", json=created | {"subject": {"reference": bob}})

    assert client.get("Observation", params={"patient": alice}).json()["total"] == 0
    assert _ids(client.get("Observation", params={"subject": bob}).json()) == [created["id"]]
    assert _stats(client)["examined"] == 1


def test_deleted_resource_leaves_patient_and_identifier_indexes(client: httpx.Client) -> None:
    (alice,) = _patients(client, 1)
    system = _system()
    kept = client.post("Task", json=_task(system, "kept") | {"for": {"reference": alice}}).json()
    gone = client.post("Task", json=_task(system, "gone") | {"for": {"reference": alice}}).json()

    client.delete(f"Task/{gone['id']}")

    assert _ids(client.get("Task", params={"patient": alice}).json()) == [kept["id"]]
    assert client.get("Task", params={"identifier": f"{system}|gone"}).json()["total"] == 0
    assert _stats(client)["examined"] == 0


def test_transaction_writes_are_indexed_and_rolled_back_writes_are_not(client: httpx.Client) -> None:
    alice, bob = _patients(client, 2)
    system = _system()
    moved = client.post("Task", json=_task(system, "moved") | {"for": {"reference": alice}}).json()
    good = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _task(system, "new") | {"for": {"reference": alice}},
                "request": {"method": "POST", "url": "Task", "ifNoneExist": f"identifier={system}|new"},
            },
            {
                "resource": moved | {"for": {"reference": bob}},
                "request": {
                    "method": "PUT",
                    "url": f"Task/{moved['id']}",
                    "ifMatch": moved["meta"]["versionId"],
                },
            },
        ],
    }
    failing = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _task(system, "rolled-back") | {"for": {"reference": bob}},
                "request": {"method": "POST", "url": "Task"},
            },
            {
                "resource": moved,
                "request": {"method": "PUT", "url": f"Task/{moved['id']}", "ifMatch": 'W/"stale"'},
            },
        ],
    }

    created = client.post("", json=good).json()["entry"][0]["resource"]["id"]
    assert client.post("", json=failing).status_code == 412

    assert _ids(client.get("Task", params={"patient": alice}).json()) == [created]
    assert _ids(client.get("Task", params={"patient": bob}).json()) == [moved["id"]]
    assert client.get("Task", params={"identifier": f"{system}|rolled-back"}).json()["total"] == 0
    assert client.get("Task", params={"identifier": f"{system}|new"}).json()["total"] == 1


def test_reset_empties_the_indexes(seed_file: Path) -> None:
    with FhirSandbox(seeds=[seed_file]) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        identifier = [{"system": "urn:s", "value": "1"}]
        http.post("Observation", json=_observation("Patient/p1", "1", identifier=identifier))

        server.reset()

        assert http.get("Observation", params={"patient": "Patient/p1"}).json()["total"] == 0
        assert http.get("Observation", params={"identifier": "urn:s|1"}).json()["total"] == 0
        assert http.get("Patient", params={"identifier": f"urn:test:mrn|{SEED_MRN}"}).json()["total"] == 0
        http.post("Observation", json=_observation("Patient/p1", "2"))
        assert http.get("Observation", params={"patient": "Patient/p1"}).json()["total"] == 1
        assert _stats(http)["examined"] == 1


def test_many_token_code_search_in_compartment(client: httpx.Client) -> None:
    alice, bob = _patients(client, 2)
    wanted = [
        client.post("Observation", json=_observation(alice, f"{i}-0")).json()["id"] for i in range(0, 10, 2)
    ]
    for i in range(1, 10, 2):
        client.post("Observation", json=_observation(alice, f"{i}-0"))
    client.post("Observation", json=_observation(bob, "0-0"))
    codes = ",".join(f"http://LOINC.org|{i}-0" for i in range(0, 800, 2))

    bundle = client.get("Observation", params={"patient": alice, "code": codes}).json()

    assert _ids(bundle) == wanted
    assert _stats(client)["search"][0]["examined"] == 10


def test_stats_is_loopback_json_and_does_not_count_itself(client: httpx.Client) -> None:
    client.get("Task", params={"identifier": f"{_system()}|x"})

    first, second = _stats(client), _stats(client)

    assert first == second
    assert first["search"][0]["strategy"] == "identifier"


# Writes replayed on an indexed and a scanning sandbox; ids are client-assigned (PUT) so they agree.
def _random_resource(rng: random.Random, resource_id: str, patients: list[str]) -> dict[str, Any]:
    references = [*patients, patients[0].split("/")[1], "Group/g1", f"{patients[1]}/_history/1", None]
    subject = rng.choice(references)
    identifiers = [
        {"system": rng.choice(["urn:a", "urn:B"]), "value": rng.choice(["v1", "V1", "v2"])}
        for _ in range(rng.randint(0, 2))
    ]
    kind = rng.choice(["Observation", "Observation", "Task", "Encounter", "Coverage"])
    resource: dict[str, Any] = {"resourceType": kind, "id": resource_id}
    reference = {"reference": subject} if subject else None
    if kind == "Observation":
        resource |= _observation(subject, rng.choice(["1", "2", "3", "X"]), rng.choice(["urn:a", "urn:B"]))
        resource["effectiveDateTime"] = f"2024-01-{rng.randint(10, 28)}"
    elif kind == "Task":
        resource |= {"status": "ready", "intent": "order"} | ({"for": reference} if reference else {})
    elif kind == "Encounter":
        resource |= {"status": "finished", "class": {"code": "IMP"}}
        resource |= {"subject": reference} if reference else {}
    else:
        resource |= {"status": "active", "beneficiary": reference or {"reference": patients[0]}}
        resource |= {"payor": [{"reference": "Organization/o"}]}
    return resource | ({"identifier": identifiers} if identifiers else {})


def _comparable(bundle: dict[str, Any]) -> Any:
    entries = [
        (e["resource"]["resourceType"], e["resource"]["id"], e["search"]["mode"])
        for e in bundle.get("entry", [])
    ]
    return bundle.get("resourceType"), bundle.get("total"), entries


def test_indexed_searches_answer_like_a_full_scan() -> None:
    rng = random.Random(20240611)
    patients = [f"Patient/p{i}" for i in range(4)]
    with (
        FhirSandbox() as indexed,
        _ScanningSandbox() as scanning,
        httpx.Client(base_url=indexed.base_url, timeout=30) as one,
        httpx.Client(base_url=scanning.base_url, timeout=30) as other,
    ):
        both = (one, other)
        written: list[tuple[str, str]] = []
        for step in range(160):
            requests: list[tuple[str, str, dict[str, Any] | None]]
            roll = rng.random()
            if roll < 0.6 or not written:
                resource = _random_resource(rng, f"r{step}", patients)
                written.append((resource["resourceType"], resource["id"]))
                requests = [("PUT", f"{resource['resourceType']}/{resource['id']}", resource)]
            elif roll < 0.85:
                kind, resource_id = rng.choice(written)
                resource = _random_resource(rng, resource_id, patients)
                while resource["resourceType"] != kind:
                    resource = _random_resource(rng, resource_id, patients)
                requests = [("PUT", f"{kind}/{resource_id}", resource)]
            elif roll < 0.95:
                kind, resource_id = rng.choice(written)
                requests = [("DELETE", f"{kind}/{resource_id}", None)]
            else:
                entries = []
                for n in range(3):
                    resource = _random_resource(rng, f"tx{step}-{n}", patients)
                    written.append((resource["resourceType"], resource["id"]))
                    url = f"{resource['resourceType']}/{resource['id']}"
                    entries.append({"resource": resource, "request": {"method": "PUT", "url": url}})
                if rng.random() < 0.5:
                    stale = {"method": "PUT", "url": "Task/none", "ifMatch": 'W/"x"'}
                    entries.append({"resource": _task("urn:x", "x") | {"id": "none"}, "request": stale})
                requests = [("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": entries})]
            for method, url, body in requests:
                statuses = {c.request(method, url, json=body).status_code for c in both}
                assert len(statuses) == 1

        found = compared = 0
        values = ("1", "x", *map(str, range(10, 40)))
        codes = ",".join(f"{system}|{code}" for system in ("urn:a", "URN:B") for code in values)
        for kind in ("Observation", "Task", "Encounter", "Coverage"):
            searches: list[dict[str, str]] = [
                {"identifier": "urn:a|v1"},
                {"identifier": "V2"},
                {"identifier": "|v1,urn:b|V2"},
                {"identifier": "urn:a|"},
                {"patient:missing": "true"},
                {"patient": "p0"},
                {"patient": f"{patients[1]}/_history/1"},
                {"_sort": "-_lastUpdated", "_count": "3", "_offset": "1", "patient": patients[2]},
            ]
            for patient in patients:
                searches += [
                    {"patient": patient},
                    {"patient": f"{patient},{patients[3]}", "_summary": "count"},
                    {"patient": patient, "identifier": "urn:a|"},
                    {"patient": patient, "_include": f"{kind}:patient"},
                ]
                searches += [{"subject": patient}, {"subject": "Group/g1"}] if kind != "Coverage" else []
                if kind == "Observation":
                    searches += [{"patient": patient, "code": codes}, {"code": codes}]
            for params in searches:
                answers = [c.get(kind, params=params) for c in both]
                assert answers[0].status_code == answers[1].status_code, (kind, params)
                assert _comparable(answers[0].json()) == _comparable(answers[1].json()), (kind, params)
                found += bool(answers[0].json().get("total"))
                compared += 1
        assert found > compared // 2  # the comparison is not between empty answers


def test_protected_sandbox_refuses_requests_without_its_token(protected_fhir_sandbox: FhirSandbox) -> None:
    from tests.conftest import SANDBOX_TOKEN

    base = protected_fhir_sandbox.base_url
    task = {"resourceType": "Task", "status": "ready", "intent": "order"}
    assert httpx.get(f"{base}/metadata").status_code == 200  # capabilities stay public
    refused = httpx.post(f"{base}/Task", json=task)
    assert refused.status_code == 401
    assert refused.json()["resourceType"] == "OperationOutcome"
    wrong = httpx.post(f"{base}/Task", json=task, headers={"Authorization": "Bearer other"})
    assert wrong.status_code == 401
    created = httpx.post(f"{base}/Task", json=task, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"})
    assert created.status_code == 201
    assert httpx.get(f"{base}/Task/{created.json()['id']}").status_code == 401
