"""Dev mode never beside OIDC, always announced, and its tokens for this machine only."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from flows.settings import Settings
from tests.api.conftest import api_app

WHO = {"subject": "x", "roles": ["admin"], "wards": []}


def test_dev_mode_with_oidc_refuses_to_start_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("ERAS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ERAS_WORKLIST_DEV_MODE", "true")
    monkeypatch.setenv("ERAS_WORKLIST_OIDC_ISSUER", "https://idp.example")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "ERAS_WORKLIST_DEV_MODE" in str(raised.value)
    assert "ERAS_WORKLIST_OIDC_ISSUER" in str(raised.value)


async def test_dev_mode_warns_at_start(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    api_app(sqlite_url)
    assert any(r.levelno == logging.WARNING and "ERAS_WORKLIST_DEV_MODE" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize(("client", "expected"), [("127.0.0.1", 200), ("::1", 200), ("10.1.2.3", 403),
                                                  ("192.168.0.7", 403)])
async def test_dev_token_only_for_loopback_clients(sqlite_url: str, client: str, expected: int) -> None:
    app = api_app(sqlite_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
            response = await http.post("/auth/dev-token", json=WHO)
    assert response.status_code == expected
    assert ("access_token" in response.json()) is (expected == 200)
