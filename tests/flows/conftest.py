"""A Runtime wired to the sandbox FHIR server and a real database, for each write target."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import Engine

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from flows.runtime import Runtime, WriteTarget
from tests.api.conftest import api_app
from tests.utils.notifications import clear_intake_tables
from tests.utils.pathways import LONDON, lumbar

__all__ = ["LONDON", "lumbar"]  # for the tests that import them from here


@pytest.fixture(scope="session")
def task_store() -> object:
    """A second FHIR server: the store a hospital runs beside an EHR that refuses Task writes."""
    with FhirSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def new_patient_id() -> str:
    return f"pt-{uuid.uuid4().hex[:12]}"


RuntimeFactory = Callable[..., "AsyncIterator[Runtime]"]


@pytest.fixture
def make_runtime(fhir_sandbox: FhirSandbox, task_store: FhirSandbox, db_engine: Engine):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def factory(target: WriteTarget = WriteTarget.EHR, base_url: str | None = None,  # type: ignore[no-untyped-def]
                      db: Engine | None = None, **client_args) -> AsyncIterator[Runtime]:
        async with FhirClient(base_url or fhir_sandbox.base_url, **client_args) as ehr, \
                FhirClient(task_store.base_url) as store:
            tasks = {WriteTarget.EHR: ehr, WriteTarget.FHIR_STORE: store, WriteTarget.NONE: None}[target]
            yield Runtime(pathways={"lumbar_fusion": lumbar()}, ehr=ehr, tasks=tasks, target=target,
                          db=db or db_engine, tz=LONDON)
    return factory


@pytest.fixture
async def api(db_url: str):  # type: ignore[no-untyped-def]
    app = api_app(db_url)
    async with app.router.lifespan_context(app):
        clear_intake_tables(app.state.engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
            yield http
