"""The API on the shared test databases (SQLite and PostgreSQL), with its lifespan run."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.main import create_app
from engine.loader import PATHWAYS_DIR, load_pathway
from engine.model import Pathway
from flows.settings import Settings
from tests.utils.notifications import clear_intake_tables

CREDENTIALS = {"sub-a": "token-a", "sub-b": "secret-b"}
_PATHWAYS: dict[str, Pathway] = {}


def api_settings(db_url: str, **overrides: object) -> Settings:
    """The API's settings on `db_url` with dev sign-in; `overrides` replace top-level fields."""
    values: dict[str, object] = {
        "database_url": db_url,
        "subscriptions": {key: SecretStr(value) for key, value in CREDENTIALS.items()},
        "subscriptions_file": None,
        "worklist": {"dev_mode": True},
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


def api_app(db_url: str, **overrides: object) -> FastAPI:
    """`create_app` on `api_settings`, with the lumbar pathway compiled once per session."""
    if not _PATHWAYS:
        pathway = load_pathway(PATHWAYS_DIR / "lumbar_fusion.yaml")
        _PATHWAYS[pathway.id] = pathway
    return create_app(api_settings(db_url, **overrides), pathways=_PATHWAYS)


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[FastAPI]:
    application = api_app(db_url)
    async with application.router.lifespan_context(application):
        clear_intake_tables(application.state.engine)
        yield application
        clear_intake_tables(application.state.engine)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
        yield http
