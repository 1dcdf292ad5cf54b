"""`uvicorn --factory api.main:create_app` (no arguments) is the whole API of `eras serve`."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from tests.utils.loopback import free_port
from tests.utils.processes import server_process

WHOLE_API = {
    "/fhir/notifications", "/healthz", "/worklist", "/worklist/{key}/complete", "/worklist/{key}/decline",
    "/worklist/{key}/reassign", "/audit/compliance", "/audit/measure", "/runtime/status", "/ui/worklist",
    "/ui/audit", "/auth/dev-token",
}


def _worklist_answer(base: str) -> httpx.Response:
    who = {"subject": "nurse.a", "roles": ["nurse"], "wards": ["4B"]}
    issued = httpx.post(f"{base}/auth/dev-token", json=who)
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    return httpx.get(f"{base}/worklist?ward=4B", headers={"Authorization": f"Bearer {token}"})


def test_create_app_without_arguments_has_the_whole_api(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ERAS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ERAS_WORKLIST_DEV_MODE", "true")
    paths = set(create_app().openapi()["paths"])
    assert paths >= WHOLE_API - {"/ui/worklist", "/ui/audit"}  # pages are not in the OpenAPI


def test_uvicorn_factory_serves_worklist_audit_and_runtime(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(port),
               "--log-level", "warning"]
    env = {"ERAS_DATABASE_URL": sqlite_url, "ERAS_WORKLIST_DEV_MODE": "true",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with server_process(command, base=base, cwd=tmp_path, env=env):
        openapi = httpx.get(f"{base}/openapi.json").json()
        assert set(openapi["paths"]) >= WHOLE_API - {"/ui/worklist", "/ui/audit"}
        assert _worklist_answer(base).status_code == 200
        assert httpx.get(f"{base}/ui/worklist").status_code == 200
        assert httpx.get(f"{base}/ui/audit").status_code == 200
