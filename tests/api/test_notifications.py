"""Tests for POST /fhir/notifications: auth, refusal of malformed bodies, dedup, Backport, ack."""

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from store.inbox import claim_batch, gaps_to_catch_up, get_subscription_state, mark_done
from store.models import InboxEvent
from tests.api.conftest import api_app
from tests.utils.notifications import backport_bundle, clear_intake_tables, observation
from tests.utils.worklist import clear_ward, seed_enrolment

FHIR_JSON = "application/fhir+json"
AUTH_A = {"Authorization": "Bearer token-a", "Content-Type": FHIR_JSON}


@pytest.fixture
def enrolled(app: FastAPI) -> Iterator[Callable[..., str]]:
    """Enrols a patient (a new id unless given), so that their events wait for the drain: one
    about a patient with no enrolment, whose resource cannot enrol them, is stored done."""
    enrolments: list[str] = []

    def enrol(patient_id: str | None = None) -> str:
        row = seed_enrolment(app.state.engine, ward="Ward 7",
                             patient_id=patient_id or f"p-{uuid.uuid4().hex[:12]}")
        enrolments.append(row.id)
        return row.patient_ref.removeprefix("Patient/")

    yield enrol
    clear_ward(app.state.engine, enrolments)


def inbox_rows(engine: Engine) -> list[InboxEvent]:
    with Session(engine) as session:
        return list(session.exec(select(InboxEvent).order_by(col(InboxEvent.id))).all())


def inbox_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(InboxEvent)).one())


def _dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def _bad_observation(**changes: Any) -> bytes:
    resource = observation() | changes
    return _dumps({k: v for k, v in resource.items() if v is not None})


def _event_number_not_integer() -> bytes:
    bundle = backport_bundle("sub-a", events=[("seven", observation())])
    return _dumps(bundle)


MALFORMED: list[tuple[str, bytes, str, int]] = [
    ("malformed-json", b'{"resourceType": "Observation", ', FHIR_JSON, 400),
    ("not-utf8", b'{"resourceType": "\xff\xfe"}', FHIR_JSON, 400),
    ("json-array", b'[{"resourceType": "Observation"}]', FHIR_JSON, 422),
    ("no-resource-type", _dumps({"id": "x", "status": "final"}), FHIR_JSON, 422),
    ("unknown-resource-type", _dumps({"resourceType": "Banana", "id": "x"}), FHIR_JSON, 422),
    (
        "bundle-searchset",
        _dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}),
        FHIR_JSON,
        422,
    ),
    ("bundle-transaction", _dumps({"resourceType": "Bundle", "type": "transaction"}), FHIR_JSON, 422),
    (
        "history-first-entry-not-parameters",
        _dumps({"resourceType": "Bundle", "type": "history", "entry": [{"resource": observation()}]}),
        FHIR_JSON,
        422,
    ),
    (
        "status-without-type",
        _dumps(
            {
                "resourceType": "Bundle",
                "type": "history",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Parameters",
                            "parameter": [{"name": "status", "valueCode": "active"}],
                        }
                    }
                ],
            }
        ),
        FHIR_JSON,
        422,
    ),
    ("event-number-not-integer", _event_number_not_integer(), FHIR_JSON, 422),
    ("unknown-element", _bad_observation(colour="red"), FHIR_JSON, 422),
    ("missing-required-element", _bad_observation(code=None), FHIR_JSON, 422),
    ("datetime-without-zone", _bad_observation(effectiveDateTime="2025-03-10T08:00:00"), FHIR_JSON, 422),
    ("payload-without-id", _bad_observation(id=None), FHIR_JSON, 422),
    ("text-content-type", b"hello", "text/plain", 415),
    ("xml-content-type", b'<Observation xmlns="http://hl7.org/fhir"/>', "application/fhir+xml", 415),
    ("oversized", _dumps(observation() | {"note": [{"text": "x" * (1024 * 1024)}]}), FHIR_JSON, 413),
    ("nested-too-deep", b"[" * 50_000 + b"]" * 50_000, FHIR_JSON, 400),
]


@pytest.mark.parametrize(
    "body, content_type, status", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_post_malformed_body_4xx_operation_outcome_nothing_stored(
    client: httpx.AsyncClient, app: FastAPI, body: bytes, content_type: str, status: int
) -> None:
    headers = {"Authorization": "Bearer token-a", "Content-Type": content_type}

    response = await client.post("/fhir/notifications/sub-a", content=body, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error" and outcome["issue"][0]["diagnostics"]
    assert inbox_count(app.state.engine) == 0


async def test_post_streamed_oversized_body_without_content_length_413(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 100_000

    response = await client.post("/fhir/notifications/sub-a", content=chunks(), headers=AUTH_A)

    assert response.status_code == 413
    assert inbox_count(app.state.engine) == 0


async def test_post_invalid_resource_message_names_path_not_data(client: httpx.AsyncClient) -> None:
    body = _bad_observation(effectiveDateTime="2025-03-10T08:00:00")

    response = await client.post("/fhir/notifications/sub-a", content=body, headers=AUTH_A)

    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert diagnostics.startswith("Observation.effectiveDateTime")
    assert "2025-03-10" not in diagnostics


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/fhir/notifications/sub-a", {}),
        ("/fhir/notifications/sub-a", {"Authorization": "Bearer wrong"}),
        ("/fhir/notifications/sub-a", {"Authorization": "Basic dG9rZW4tYQ=="}),
        ("/fhir/notifications/sub-a", {"X-Subscription-Secret": "secret-b"}),
        ("/fhir/notifications/unknown", {"Authorization": "Bearer token-a"}),
        ("/fhir/notifications", {"X-Subscription-Id": "sub-b", "Authorization": "Bearer token-a"}),
    ],
    ids=[
        "no-credential",
        "wrong-token",
        "basic-scheme",
        "other-subscriptions-secret",
        "unknown",
        "header-id",
    ],
)
async def test_post_bad_credentials_401(
    client: httpx.AsyncClient, app: FastAPI, path: str, headers: dict[str, str]
) -> None:
    response = await client.post(
        path, content=_dumps(observation()), headers=headers | {"Content-Type": FHIR_JSON}
    )

    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "login"
    assert response.headers["www-authenticate"] == "Bearer"
    assert inbox_count(app.state.engine) == 0


async def test_post_backport_bundle_authenticated_by_its_subscription(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    bundle = _dumps(backport_bundle("sub-b", events=[(1, observation())]))

    wrong = await client.post("/fhir/notifications", content=bundle, headers=AUTH_A)
    right = await client.post(
        "/fhir/notifications", content=bundle, headers={"X-Subscription-Secret": "secret-b"}
    )

    assert (wrong.status_code, right.status_code) == (401, 200)
    assert [row.source for row in inbox_rows(app.state.engine)] == ["sub-b"]


async def test_post_resource_payload_stored_with_patient(client: httpx.AsyncClient, app: FastAPI,
                                                        enrolled: Callable[..., str]) -> None:
    patient = enrolled()
    resource = observation(resource_id="obs-1", version="3", patient=patient)

    response = await client.post("/fhir/notifications/sub-a", content=_dumps(resource), headers=AUTH_A)

    assert response.status_code == 200
    assert response.json()["issue"][0]["severity"] == "information"
    (row,) = inbox_rows(app.state.engine)
    assert (row.dedup_key, row.patient_ref, row.status) == (
        "res:Observation/obs-1/_history/3",
        f"Patient/{patient}",
        "pending",
    )
    assert row.payload == {"resourceType": "Observation", "id": "obs-1",
                           "meta": {"versionId": "3", "lastUpdated": "2025-03-10T08:00:00Z"}}


async def test_post_same_resource_version_twice_stored_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = _dumps(observation(resource_id="obs-dup", version="1"))
    headers = {"X-Subscription-Id": "sub-a", "Authorization": "Bearer token-a"}

    first = await client.post("/fhir/notifications", content=body, headers=headers)
    second = await client.post("/fhir/notifications", content=body, headers=headers)
    newer = await client.post(
        "/fhir/notifications",
        content=_dumps(observation(resource_id="obs-dup", version="2")),
        headers=headers,
    )

    assert [r.status_code for r in (first, second, newer)] == [200, 200, 200]
    assert "1 duplicate" in second.json()["issue"][0]["diagnostics"]
    assert [row.dedup_key for row in inbox_rows(app.state.engine)] == [
        "res:Observation/obs-dup/_history/1",
        "res:Observation/obs-dup/_history/2",
    ]


async def test_post_empty_body_is_a_ping(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.post("/fhir/notifications/sub-a", headers={"Authorization": "Bearer token-a"})

    assert response.status_code == 200
    (row,) = inbox_rows(app.state.engine)
    assert row.dedup_key.startswith("ping:sub-a:") and row.resource_type is None


async def test_post_empty_body_without_subscription_400(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.post("/fhir/notifications", headers={"Authorization": "Bearer token-a"})

    assert response.status_code == 400
    assert "X-Subscription-Id" in response.json()["issue"][0]["diagnostics"]
    assert inbox_count(app.state.engine) == 0


async def test_post_backport_handshake_and_heartbeat_recorded_not_queued(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    handshake = backport_bundle("sub-a", "handshake", events_since_start=0)
    heartbeat = backport_bundle("sub-a", "heartbeat", events_since_start=0)

    shook = await client.post("/fhir/notifications/sub-a", content=_dumps(handshake), headers=AUTH_A)
    beat = await client.post("/fhir/notifications/sub-a", content=_dumps(heartbeat), headers=AUTH_A)

    assert (shook.status_code, beat.status_code) == (200, 200)
    assert inbox_count(app.state.engine) == 0
    with Session(app.state.engine) as session:
        state = get_subscription_state(session=session, subscription_id="sub-a")
        assert state is not None
        assert state.handshake_at is not None and state.last_heartbeat_at is not None
        assert (state.status, state.last_event_number) == ("active", 0)


async def test_post_backport_events_full_and_id_only(client: httpx.AsyncClient, app: FastAPI,
                                                    enrolled: Callable[..., str]) -> None:
    patient = enrolled()
    full = observation(resource_id="obs-full", patient=patient)
    bundle = backport_bundle("sub-a", events=[(1, full), (2, None)], events_since_start=2)

    response = await client.post("/fhir/notifications/sub-a", content=_dumps(bundle), headers=AUTH_A)
    again = await client.post("/fhir/notifications/sub-a", content=_dumps(bundle), headers=AUTH_A)

    assert (response.status_code, again.status_code) == (200, 200)
    rows = inbox_rows(app.state.engine)
    assert [(r.dedup_key, r.event_number, r.resource_id, r.patient_ref) for r in rows] == [
        ("sub:sub-a:1", 1, "obs-full", f"Patient/{patient}"),
        ("sub:sub-a:2", 2, None, None),
    ]
    assert rows[0].payload == {"resourceType": "Observation", "id": "obs-full", "meta": full["meta"]}
    assert rows[1].payload is None


async def test_post_backport_gap_recorded_for_catch_up(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = backport_bundle("sub-a", events=[(1, observation())], events_since_start=1)
    later = backport_bundle("sub-a", events=[(5, observation())], events_since_start=5)

    await client.post("/fhir/notifications/sub-a", content=_dumps(first), headers=AUTH_A)
    response = await client.post("/fhir/notifications/sub-a", content=_dumps(later), headers=AUTH_A)

    assert response.status_code == 200
    assert "2-4 missing" in response.json()["issue"][0]["diagnostics"]
    with Session(app.state.engine) as session:
        gaps = gaps_to_catch_up(session=session)
        assert [(g.subscription_id, g.from_number, g.to_number) for g in gaps] == [("sub-a", 2, 4)]
    assert inbox_count(app.state.engine) == 2


async def test_post_ack_only_after_commit(client: httpx.AsyncClient, app: FastAPI,
                                         enrolled: Callable[..., str]) -> None:
    seen: list[bool] = []
    patient = enrolled()

    def visible_elsewhere(inbox_ids: tuple[int, ...]) -> None:
        with Session(app.state.engine) as other:
            rows = other.exec(select(InboxEvent).where(InboxEvent.id.in_(inbox_ids))).all()  # type: ignore[union-attr]
            seen.append(len(rows) == len(inbox_ids) == 1)

    app.state.on_event_stored = visible_elsewhere
    response = await client.post("/fhir/notifications/sub-a", content=_dumps(observation(patient=patient)),
                                 headers=AUTH_A)

    assert response.status_code == 200
    assert seen == [True]


async def test_post_logs_no_patient_reference(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    await client.post(
        "/fhir/notifications/sub-a",
        content=_dumps(observation(resource_id="o-log", patient="secret-pt")),
        headers=AUTH_A,
    )

    assert "Observation/o-log" in caplog.text
    assert "secret-pt" not in caplog.text


async def test_post_hook_failure_still_acknowledged(client: httpx.AsyncClient, app: FastAPI) -> None:
    def broken(_ids: tuple[int, ...]) -> None:
        raise RuntimeError("drain loop gone")

    app.state.on_event_stored = broken
    response = await client.post("/fhir/notifications/sub-a", content=_dumps(observation()), headers=AUTH_A)

    assert response.status_code == 200
    assert inbox_count(app.state.engine) == 1


async def test_healthz_reports_alive(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def live_server(db_url: str) -> Iterator[tuple[str, FastAPI]]:
    app = api_app(db_url)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    clear_intake_tables(app.state.engine)
    yield f"http://127.0.0.1:{port}", app
    clear_intake_tables(app.state.engine)
    server.should_exit = True
    thread.join(timeout=30)


def test_post_through_uvicorn_stored_once(live_server: tuple[str, FastAPI]) -> None:
    base_url, app = live_server
    body = _dumps(observation(resource_id="obs-live"))

    with httpx.Client(base_url=base_url) as http:
        codes = [
            http.post("/fhir/notifications/sub-a", content=body, headers=AUTH_A).status_code for _ in range(2)
        ]
        refused = http.post("/fhir/notifications/sub-a", content=b"{", headers=AUTH_A)
        health = http.get("/healthz")

    assert codes == [200, 200]
    assert (refused.status_code, refused.headers["content-type"]) == (400, FHIR_JSON)
    assert health.status_code == 200
    assert [row.resource_id for row in inbox_rows(app.state.engine)] == ["obs-live"]


async def test_post_concurrent_notifications_group_committed_each_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    resources = [observation() for _ in range(30)]
    bodies = [_dumps(r) for r in resources] + [_dumps(r) for r in resources[:10]]

    responses = await asyncio.gather(
        *(client.post("/fhir/notifications/sub-a", content=body, headers=AUTH_A) for body in bodies)
    )

    assert {r.status_code for r in responses} == {200}
    assert sorted(row.resource_id or "" for row in inbox_rows(app.state.engine)) == sorted(
        r["id"] for r in resources
    )


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer wrong"}, {}, {"X-Subscription-Secret": "nope"},
     {"Authorization": "Bearer wrong", "X-Subscription-Id": "sub-a"}],
    ids=["bad-bearer-no-id", "no-credential-no-id", "bad-secret-no-id", "bad-bearer-header-id"],
)
async def test_post_unauthenticated_megabyte_refused_unread_unparsed(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    # Structural: the body is neither read nor parsed before the credential is checked.
    from api.intake import routes

    calls: list[str] = []
    monkeypatch.setattr(routes, "parse_notification", lambda *a, **k: calls.append("parse"))

    async def read_body(*_args: object) -> bytes:
        calls.append("read")
        return b""

    monkeypatch.setattr(routes, "_read_body", read_body)
    body = b'{"resourceType": "Observation", "note": "' + b"x" * (1024 * 1024 - 60) + b'"}'
    response = await client.post("/fhir/notifications", content=body,
                                 headers=headers | {"Content-Type": FHIR_JSON})

    assert response.status_code == 401
    assert calls == []
    assert inbox_count(app.state.engine) == 0


PATIENT_DETAILS = ("Quixote", "Zebedee", "1931-02-03", "MRN-998877", "Acacia Avenue")


def _stored_text(engine: Engine) -> str:
    """Every row of every table, as text."""
    with Session(engine) as session:
        tables = [t for t in SQLModel.metadata.sorted_tables]
        return "\n".join(str(row) for t in tables for row in session.execute(sa_select(t)).all())


async def test_post_patient_notification_keeps_no_patient_details(
    client: httpx.AsyncClient, app: FastAPI, enrolled: Callable[..., str]
) -> None:
    patient_id = enrolled()  # else stored done at once, its payload dropped (see the test below)
    patient = {"resourceType": "Patient", "id": patient_id, "meta": {"versionId": "2"},
               "identifier": [{"system": "urn:mrn", "value": "MRN-998877"}],
               "name": [{"family": "Quixote", "given": ["Zebedee"]}], "birthDate": "1931-02-03",
               "address": [{"line": ["12 Acacia Avenue"]}]}
    # once as an R4 rest-hook resource, once in a Backport bundle (full-resource payload)
    later = patient | {"meta": {"versionId": "3"}}
    bundle = backport_bundle("sub-a", events=[(1, later)], events_since_start=1)
    for body in (patient, bundle):
        response = await client.post("/fhir/notifications/sub-a", content=_dumps(body), headers=AUTH_A)
        assert response.status_code == 200
    stored = _stored_text(app.state.engine)
    assert patient_id in stored  # the reference processing needs is kept
    assert [d for d in PATIENT_DETAILS if d in stored] == []
    # once processed, nothing of the payload is left at all
    now = datetime.now(UTC)
    with Session(app.state.engine) as session:
        claimed = claim_batch(session=session, worker="t", limit=10, now=now, lease=timedelta(minutes=5))
        mark_done(session=session, ids=[r.id for r in claimed if r.id is not None],
                  token=claimed[0].claim_token or "", at=now)
        session.commit()
    assert [r.payload for r in inbox_rows(app.state.engine)] == [None, None]


async def test_post_events_that_cannot_matter_stored_done_unread_and_wake_nothing(
    client: httpx.AsyncClient, app: FastAPI, enrolled: Callable[..., str]
) -> None:
    """A hospital's whole feed: another ward's observation about a patient on no pathway is stored
    done at once, its payload dropped, and the drain is not woken; the same about an enrolled
    patient, and a procedure about anyone (the lumbar pathway enrols on one), wait for the drain."""
    woken: list[int] = []
    app.state.on_event_stored = woken.extend
    patient = enrolled()
    procedure = {"resourceType": "Procedure", "id": "proc-1", "meta": {"versionId": "1"},
                 "status": "completed", "subject": {"reference": "Patient/no-pathway-2"},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "80146002"}]}}
    bodies = [observation(resource_id="obs-other", patient="no-pathway-1"), procedure,
              observation(resource_id="obs-enrolled", patient=patient)]
    for body in bodies:
        response = await client.post("/fhir/notifications/sub-a", content=_dumps(body), headers=AUTH_A)
        assert response.status_code == 200
        assert "1 event(s) stored" in response.json()["issue"][0]["diagnostics"]
    rows = {row.resource_id: row for row in inbox_rows(app.state.engine)}
    assert {key: (row.status, row.processed_at is not None, row.payload is not None)
            for key, row in rows.items()} == {"obs-other": ("done", True, False),
                                              "proc-1": ("pending", False, True),
                                              "obs-enrolled": ("pending", False, True)}
    assert sorted(woken) == sorted([rows["proc-1"].id, rows["obs-enrolled"].id])


async def test_post_absurd_event_number_opens_no_gap_and_later_gaps_still_found(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # Last seen 1; then 10^15 (an absurd jump, > 100,000 past 1): its resource is taken in, but no
    # gap 2..10^15-1 is opened and the sequence stays at 1; then 5 arrives: the real gap 2-4.
    numbers = [1, 10**15, 5]
    for number in numbers:
        bundle = backport_bundle("sub-a", events=[(number, observation())], events_since_start=number)
        response = await client.post("/fhir/notifications/sub-a", content=_dumps(bundle), headers=AUTH_A)
        assert response.status_code == 200
    with Session(app.state.engine) as session:
        gaps = [(g.from_number, g.to_number) for g in gaps_to_catch_up(session=session)]
        state = get_subscription_state(session=session, subscription_id="sub-a")
    assert gaps == [(2, 4)]
    assert state is not None and state.last_event_number == 5
    assert inbox_count(app.state.engine) == 3


async def test_post_event_number_beyond_int64_is_422(client: httpx.AsyncClient, app: FastAPI) -> None:
    bundle = backport_bundle("sub-a", events=[(1, observation())])
    bundle["entry"][0]["resource"]["parameter"][-1]["part"][0] = {"name": "event-number",
                                                                 "valueInteger": 10**30}
    response = await client.post("/fhir/notifications/sub-a", content=_dumps(bundle), headers=AUTH_A)
    assert response.status_code == 422
    assert inbox_count(app.state.engine) == 0
