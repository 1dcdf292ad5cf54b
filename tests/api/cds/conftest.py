"""The API with CDS Hooks configured on both databases: the EHR's key set served on loopback,
hook calls signed as the EHR signs them, and the protected sandbox FHIR server as the EHR."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_adapters.jwks import PrivateKey, generate_key
from fhir_adapters.sandbox import FhirSandbox
from tests.api.conftest import api_app
from tests.utils.cds import BASE, CLIENT, ISSUER, auth, clear_cds_patients, serve_jwks, sign_with

Signer = Callable[..., str]


@pytest.fixture(scope="session")
def ehr_key() -> PrivateKey:
    return generate_key("ES384")


@pytest.fixture(scope="session")
def ehr_jwks_url(ehr_key: PrivateKey) -> Iterator[str]:
    with serve_jwks(ehr_key) as url:
        yield url


@pytest.fixture
def sign(ehr_key: PrivateKey) -> Signer:
    """`sign(path, **overrides)`: the JWT for a call to `BASE + path`."""
    def make(path: str, **overrides: Any) -> str:
        return sign_with(ehr_key, BASE + path, **overrides)
    return make


AppFactory = Callable[..., Any]
App = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture
def cds_apps(db_url: str, protected_fhir_sandbox: FhirSandbox, ehr_jwks_url: str) -> AppFactory:
    """`async with cds_apps(fhir_base=...) as (app, client)`: an API replica with CDS Hooks on."""
    return app_factory(db_url, protected_fhir_sandbox, ehr_jwks_url)


@pytest.fixture
def sqlite_cds_apps(sqlite_url: str, protected_fhir_sandbox: FhirSandbox, ehr_jwks_url: str) -> AppFactory:
    """`cds_apps` on SQLite alone, for what does not depend on the database (refusals, the EHR's
    speed, which variant an order means); the store's part runs on both databases elsewhere."""
    return app_factory(sqlite_url, protected_fhir_sandbox, ehr_jwks_url)


def app_factory(db_url: str, protected_fhir_sandbox: FhirSandbox, ehr_jwks_url: str) -> AppFactory:
    @asynccontextmanager
    async def make(fhir_base: str | None = None, **cds: Any) -> AsyncIterator[App]:
        app = api_app(db_url, fhir={"base_url": fhir_base or protected_fhir_sandbox.base_url},
                      cds={"issuer": ISSUER, "jwks_url": ehr_jwks_url, "client_id": CLIENT, **cds})
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                try:
                    yield app, client
                finally:
                    clear_cds_patients(app.state.engine)

    return make


@pytest.fixture
async def cds(cds_apps: AppFactory) -> AsyncIterator[App]:
    async with cds_apps() as pair:
        yield pair


async def post_hook(client: httpx.AsyncClient, sign: Signer, body: dict[str, Any]) -> httpx.Response:
    """POST the hook call to its service, signed for that endpoint."""
    path = f"/cds-services/{body['hook']}"
    return await client.post(path, json=body, headers=auth(sign(path)))
