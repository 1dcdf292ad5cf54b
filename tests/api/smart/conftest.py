"""The whole API on a real uvicorn server, launched from the local SMART authorization server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from api.auth import SESSION_COOKIE
from api.smart.launch import digest
from store.db import make_engine
from store.models import SmartSession
from tests.api.conftest import api_app
from tests.utils.loopback import serve
from tests.utils.smart_server import CLIENT_ID, SmartServer, smart_server


def age_session(engine: Engine, browser: httpx.Client, **instants: datetime) -> None:
    """Set the browser's session's `expires_at` / `token_expires_at` (a session grown old)."""
    with Session(engine) as session:
        row = session.get(SmartSession, digest(browser.cookies[SESSION_COOKIE]))
        assert row is not None
        for name, value in instants.items():
            setattr(row, name, value)
        session.commit()


ROLE_MAP = {"RN": "nurse", "CNM": "charge_nurse"}


def smart_settings(server: SmartServer, **overrides: Any) -> dict[str, Any]:
    """The app registered with `server` (its FHIR base allowed, EHR roles mapped)."""
    return {"allowed_issuers": [server.iss], "standalone_iss": server.iss, "client_id": CLIENT_ID,
            "role_map": ROLE_MAP, **overrides}


@pytest.fixture(scope="module")
def ehr() -> Iterator[SmartServer]:
    with smart_server() as server:
        yield server


@pytest.fixture(scope="module")
def eras(db_url: str, ehr: SmartServer) -> Iterator[str]:
    """The base URL of the API, served by uvicorn on loopback."""
    with serve(api_app(db_url, smart=smart_settings(ehr))) as url:
        yield url


@pytest.fixture
def smart(ehr: SmartServer) -> SmartServer:
    """The module's SMART server, with a fresh grant for this test."""
    ehr.reset()
    return ehr


@pytest.fixture
def browser(eras: str) -> Iterator[httpx.Client]:
    """A browser: follows redirects, keeps cookies."""
    with httpx.Client(base_url=eras, follow_redirects=True, timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def store(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
