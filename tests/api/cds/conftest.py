"""The API with CDS Hooks configured on both databases: the EHR's key set served on loopback,
hook calls signed as the EHR signs them, and the protected sandbox FHIR server as the EHR."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fhir_adapters.jwks import PrivateKey, generate_key, jwks_document, public_jwk
from fhir_adapters.sandbox import FhirSandbox
from store.models import (
    AccessLogEntry,
    CdsSuggestion,
    ElementResultRow,
    ElementStatus,
    Enrolment,
    PlannedActionRow,
)
from tests.api.conftest import api_app
from tests.conftest import SANDBOX_TOKEN
from tests.utils.loopback import serve

ISSUER = "https://ehr.example/cds-client"
CLIENT = "ehr-cds-client"
KID = "ehr-key-1"
BASE = "http://eras.test"
Signer = Callable[..., str]


@pytest.fixture(scope="session")
def ehr_key() -> PrivateKey:
    return generate_key("ES384")


@pytest.fixture(scope="session")
def ehr_jwks_url(ehr_key: PrivateKey) -> Iterator[str]:
    """The EHR's public key set, as the EHR publishes it (a real HTTP server on loopback)."""
    document = jwks_document([public_jwk(ehr_key, KID, "ES384")])

    async def jwks(_request: Request) -> JSONResponse:
        return JSONResponse(document)

    with serve(Starlette(routes=[Route("/jwks.json", jwks)])) as base:
        yield f"{base}/jwks.json"


def sign_with(key: PrivateKey, aud: str, *, lifetime: float = 300, issued: float | None = None,
              headers: dict[str, Any] | None = None, **claims: Any) -> str:
    """A CDS Hooks JWT as the spec has the EHR sign it: iss, sub, aud, iat, exp, jti."""
    now = time.time() if issued is None else issued
    body = {"iss": ISSUER, "sub": CLIENT, "aud": aud, "iat": int(now), "exp": int(now + lifetime),
            "jti": uuid.uuid4().hex} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="ES384",
                      headers={"kid": KID, "typ": "JWT"} | (headers or {}))


@pytest.fixture
def sign(ehr_key: PrivateKey) -> Signer:
    """`sign(path, **overrides)`: the JWT for a call to `BASE + path`."""
    def make(path: str, **overrides: Any) -> str:
        return sign_with(ehr_key, BASE + path, **overrides)
    return make


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


AppFactory = Callable[..., Any]
App = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture
def cds_apps(db_url: str, protected_fhir_sandbox: FhirSandbox, ehr_jwks_url: str) -> AppFactory:
    """`async with cds_apps(fhir_base=...) as (app, client)`: an API replica with CDS Hooks on."""
    return app_factory(db_url, protected_fhir_sandbox, ehr_jwks_url)


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
async def cds(cds_apps: AppFactory) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with cds_apps() as pair:
        yield pair


def new_patient_id() -> str:
    return f"cds-{uuid.uuid4().hex[:10]}"


def put_patient(sandbox: FhirSandbox, resource: dict[str, Any]) -> None:
    """Store a resource (with its id) on the protected sandbox EHR."""
    response = httpx.put(f"{sandbox.base_url}/{resource['resourceType']}/{resource['id']}", json=resource,
                         headers=auth(SANDBOX_TOKEN))
    response.raise_for_status()


def clear_cds_patients(engine: Engine) -> None:
    """Remove the enrolments of the `cds-` patients and everything hanging off them."""
    with Session(engine) as session:
        ids = list(session.exec(select(Enrolment.id).where(col(Enrolment.patient_ref).like("Patient/cds-%"))))
        for table in (ElementResultRow, ElementStatus, PlannedActionRow):
            session.exec(delete(table).where(col(table.enrolment_id).in_(ids)))  # type: ignore[call-overload]
        session.exec(delete(Enrolment).where(col(Enrolment.id).in_(ids)))  # type: ignore[call-overload]
        session.exec(delete(CdsSuggestion).where(col(CdsSuggestion.patient_ref).like("Patient/cds-%")))  # type: ignore[call-overload]
        session.exec(delete(AccessLogEntry))  # type: ignore[call-overload]
        session.commit()


def hook_body(hook: str, patient_id: str, *, fhir_server: str | None = None,
              prefetch: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                            "context": {"userId": "Practitioner/example", "patientId": patient_id, **context}}
    if fhir_server is not None:
        body |= {"fhirServer": fhir_server, "fhirAuthorization": {
            "access_token": SANDBOX_TOKEN, "token_type": "Bearer", "expires_in": 300,
            "scope": "user/Patient.read user/Encounter.read", "subject": "cds-service"}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


SCT, CPT, LOINC = "http://snomed.info/sct", "http://www.ama-assn.org/go/cpt", "http://loinc.org"


def draft_orders(*codings: tuple[str, str], pid: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "ServiceRequest", "id": f"draft-{i}", "status": "draft",
                      "intent": "order", "subject": {"reference": f"Patient/{pid}"},
                      "code": {"coding": [{"system": system, "code": code}]}}}
        for i, (system, code) in enumerate(codings)]}


SCT, CPT, LOINC = "http://snomed.info/sct", "http://www.ama-assn.org/go/cpt", "http://loinc.org"


async def post_hook(client: httpx.AsyncClient, sign: Signer, body: dict[str, Any]) -> httpx.Response:
    """POST the hook call to its service, signed for that endpoint."""
    path = f"/cds-services/{body['hook']}"
    return await client.post(path, json=body, headers=auth(sign(path)))
