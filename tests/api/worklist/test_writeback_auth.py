"""The worklist writes back to an EHR that requires a token, with the runtime's FHIR auth settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session

from fhir_adapters.sandbox import FhirSandbox
from store.models import PlannedActionRow
from tests.api.conftest import api_app
from tests.api.worklist.conftest import bearer
from tests.conftest import SANDBOX_TOKEN
from tests.utils.worklist import clear_ward, create_task, seed_action, seed_enrolment

CATHETER = "urinary_catheter_removal"
EHR_AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "ehr-token"
    path.write_text(SANDBOX_TOKEN + "\n", encoding="utf-8")
    return path


async def _app(db_url: str, fhir: dict[str, Any]) -> AsyncIterator[FastAPI]:
    app = api_app(db_url, fhir=fhir)
    async with app.router.lifespan_context(app):
        app.state.seeded = []
        yield app
        clear_ward(app.state.engine, app.state.seeded)


@pytest.fixture
async def with_token(
    db_url: str, protected_fhir_sandbox: FhirSandbox, token_file: Path
) -> AsyncIterator[FastAPI]:
    fhir = {"base_url": protected_fhir_sandbox.base_url, "auth": "bearer", "bearer_token_file": token_file}
    async for app in _app(db_url, fhir):
        yield app


@pytest.fixture
async def without_token(db_url: str, protected_fhir_sandbox: FhirSandbox) -> AsyncIterator[FastAPI]:
    async for app in _app(db_url, {"base_url": protected_fhir_sandbox.base_url, "auth": "none"}):
        yield app


def _seed_task(app: FastAPI, sandbox: FhirSandbox) -> tuple[str, PlannedActionRow, dict[str, Any]]:
    ward, pid = f"W{uuid.uuid4().hex[:6]}", f"pt-{uuid.uuid4().hex[:10]}"
    enrolment = seed_enrolment(app.state.engine, ward=ward, patient_id=pid)
    app.state.seeded.append(enrolment.id)
    task = create_task(sandbox.base_url, pid, token=SANDBOX_TOKEN)
    action = seed_action(app.state.engine, enrolment, CATHETER, due=datetime.now(UTC),
                         fhir_id=task["id"], fhir_version=task["meta"]["versionId"])
    return ward, action, task


async def _post(app: FastAPI, ward: str, path: str, body: dict[str, Any]) -> httpx.Response:
    user = app.state.worklist.dev_issuer.issue("nurse.a", ("nurse",), (ward,))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://eras.test") as api:
        return await api.post(path, json=body, headers=bearer(str(user)))


def _ehr_task(sandbox: FhirSandbox, task_id: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{sandbox.base_url}/Task/{task_id}", headers=EHR_AUTH).json()
    return result


async def test_writeback_with_bearer_token_completes_and_declines(
    with_token: FastAPI, protected_fhir_sandbox: FhirSandbox
) -> None:
    ward, done, done_task = _seed_task(with_token, protected_fhir_sandbox)
    response = await _post(with_token, ward, f"/worklist/{done.key}/complete", {})
    assert response.status_code == 200, response.text
    assert _ehr_task(protected_fhir_sandbox, done_task["id"])["status"] == "completed"

    ward, declined, declined_task = _seed_task(with_token, protected_fhir_sandbox)
    response = await _post(with_token, ward, f"/worklist/{declined.key}/decline",
                           {"reason": "patient-refused", "text": "asleep"})
    assert response.status_code == 200, response.text
    assert _ehr_task(protected_fhir_sandbox, declined_task["id"])["status"] == "cancelled"


async def test_writeback_without_token_fails_clearly_and_changes_nothing(
    without_token: FastAPI, protected_fhir_sandbox: FhirSandbox
) -> None:
    ward, action, task = _seed_task(without_token, protected_fhir_sandbox)
    for verb, body in (("complete", {}), ("decline", {"reason": "patient-refused"})):
        response = await _post(without_token, ward, f"/worklist/{action.key}/{verb}", body)
        assert response.status_code == 502
        assert "refused the engine's credentials" in response.json()["detail"]
    assert _ehr_task(protected_fhir_sandbox, task["id"])["status"] == "ready"
    with Session(without_token.state.engine) as session:
        row = session.get(PlannedActionRow, action.key)
        assert row is not None and row.status == "due"
