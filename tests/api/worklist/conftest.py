"""The API with the worklist mounted (dev sign-in), on both databases, writing to the sandbox FHIR server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from fhir_adapters.sandbox import FhirSandbox
from tests.api.conftest import api_app
from tests.utils.worklist import clear_ward

TokenFactory = Callable[..., str]


@pytest.fixture
async def worklist_app(db_url: str, fhir_sandbox: FhirSandbox) -> AsyncIterator[FastAPI]:
    app = api_app(db_url, fhir={"base_url": fhir_sandbox.base_url})
    async with app.router.lifespan_context(app):
        app.state.seeded = []
        yield app
        clear_ward(app.state.engine, app.state.seeded)


@pytest.fixture
async def api(worklist_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=worklist_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
        yield http


@pytest.fixture
def token(worklist_app: FastAPI) -> TokenFactory:
    def make(
        subject: str = "nurse.a", roles: tuple[str, ...] = ("nurse",), wards: tuple[str, ...] = ("4B",)
    ) -> str:
        return str(worklist_app.state.worklist.dev_issuer.issue(subject, roles, wards))

    return make


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
