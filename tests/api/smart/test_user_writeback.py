"""A launched nurse's worklist action reaches an EHR that only accepts user tokens, with her token.

The EHR here is the SMART server in front of the protected sandbox (which accepts only
`SANDBOX_TOKEN`); the SMART server grants exactly that token to the launched user, while the
engine itself has no credentials (`ERAS_FHIR_AUTH=none`). SQLite only: the sessions' storage is
tested on both databases in test_launch.py; what is tested here is where the token goes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from fhir_adapters.sandbox import FhirSandbox
from store.models import PlannedActionRow
from tests.api.conftest import api_app
from tests.api.smart.conftest import age_session, smart_settings
from tests.conftest import SANDBOX_TOKEN
from tests.utils.loopback import serve
from tests.utils.smart_server import SmartServer, smart_server
from tests.utils.worklist import clear_ward, create_task, seed_action, seed_enrolment

CATHETER = "urinary_catheter_removal"


@pytest.fixture(scope="module")
def ehr(protected_fhir_sandbox: FhirSandbox) -> Iterator[SmartServer]:
    with smart_server(fhir_upstream=protected_fhir_sandbox.base_url) as server:
        yield server


def _launched(app: FastAPI, server: SmartServer, ward: str) -> Iterator[tuple[httpx.Client, FastAPI]]:
    with serve(app) as url, httpx.Client(base_url=url, follow_redirects=True, timeout=30) as browser:
        server.reset()
        server.grant.wards, server.grant.access_token = [ward], SANDBOX_TOKEN
        browser.get("/launch", params={"iss": server.iss, "launch": server.launch()})
        app.state.seeded = []
        yield browser, app
        clear_ward(app.state.engine, app.state.seeded)


@pytest.fixture
def ward() -> str:
    return f"W{uuid.uuid4().hex[:6]}"


@pytest.fixture
def user_writes(sqlite_url: str, ehr: SmartServer, protected_fhir_sandbox: FhirSandbox,
                ward: str) -> Iterator[tuple[httpx.Client, FastAPI]]:
    app = api_app(sqlite_url, fhir={"base_url": protected_fhir_sandbox.base_url, "auth": "none"},
                  smart=smart_settings(ehr, user_token_writeback=True))
    yield from _launched(app, ehr, ward)


@pytest.fixture
def engine_writes(sqlite_url: str, ehr: SmartServer, protected_fhir_sandbox: FhirSandbox,
                  ward: str) -> Iterator[tuple[httpx.Client, FastAPI]]:
    app = api_app(sqlite_url, fhir={"base_url": protected_fhir_sandbox.base_url, "auth": "none"},
                  smart=smart_settings(ehr))
    yield from _launched(app, ehr, ward)


def _task(app: FastAPI, sandbox: FhirSandbox, ward: str) -> tuple[PlannedActionRow, str]:
    patient = f"pt-{uuid.uuid4().hex[:10]}"
    enrolment = seed_enrolment(app.state.engine, ward=ward, patient_id=patient)
    app.state.seeded.append(enrolment.id)
    task = create_task(sandbox.base_url, patient, token=SANDBOX_TOKEN)
    action = seed_action(app.state.engine, enrolment, CATHETER, due=datetime.now(UTC),
                         fhir_id=task["id"], fhir_version=task["meta"]["versionId"])
    return action, task["id"]


def _status(sandbox: FhirSandbox, task_id: str) -> str:
    auth = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    task = httpx.get(f"{sandbox.base_url}/Task/{task_id}", headers=auth)
    return str(task.json()["status"])


def test_launched_user_completes_with_her_own_token(
    user_writes: tuple[httpx.Client, FastAPI], protected_fhir_sandbox: FhirSandbox, ward: str
) -> None:
    browser, app = user_writes
    action, task_id = _task(app, protected_fhir_sandbox, ward)

    response = browser.post(f"/worklist/{action.key}/complete", json={})

    assert response.status_code == 200, response.text
    assert _status(protected_fhir_sandbox, task_id) == "completed"


def test_without_the_setting_the_engines_own_credentials_are_used(
    engine_writes: tuple[httpx.Client, FastAPI], protected_fhir_sandbox: FhirSandbox, ward: str
) -> None:
    browser, app = engine_writes
    action, task_id = _task(app, protected_fhir_sandbox, ward)

    response = browser.post(f"/worklist/{action.key}/complete", json={})

    assert response.status_code == 502  # the engine has none, and the EHR wants a token
    assert _status(protected_fhir_sandbox, task_id) == "ready"


def test_expired_user_token_asks_for_a_relaunch_and_writes_nothing(
    user_writes: tuple[httpx.Client, FastAPI], protected_fhir_sandbox: FhirSandbox, ward: str
) -> None:
    browser, app = user_writes
    action, task_id = _task(app, protected_fhir_sandbox, ward)
    age_session(app.state.engine, browser, token_expires_at=datetime.now(UTC) - timedelta(seconds=1))

    response = browser.post(f"/worklist/{action.key}/complete", json={})

    assert response.status_code == 401 and "access token has expired" in response.json()["detail"]
    assert _status(protected_fhir_sandbox, task_id) == "ready"
