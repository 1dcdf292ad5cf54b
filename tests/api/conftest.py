"""The API on the shared test databases (SQLite and PostgreSQL), with its lifespan run."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.config import Settings
from api.main import create_app
from tests.utils.notifications import clear_intake_tables

CREDENTIALS = {"sub-a": "token-a", "sub-b": "secret-b"}


def api_settings(db_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "subscriptions": {key: SecretStr(value) for key, value in CREDENTIALS.items()},
        "subscriptions_file": None,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(api_settings(db_url))
    async with application.router.lifespan_context(application):
        clear_intake_tables(application.state.engine)
        yield application
        clear_intake_tables(application.state.engine)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
        yield http
