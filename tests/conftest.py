"""Shared fixtures: the real databases (SQLite and PostgreSQL) and the sandbox FHIR server."""

from __future__ import annotations

import functools
import os
import ssl
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx._transports.default as httpx_transports
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine
from sqlmodel import Session

import api.auth
from fhir_adapters.sandbox import FhirSandbox
from store.db import make_engine
from tests.utils.databases import postgres_schema, rollback_session, sqlite_database


@pytest.fixture(scope="session", autouse=True)
def _one_default_tls_context() -> Iterator[None]:
    """httpx builds a TLS context for every client (certifi's CA bundle parsed anew: 50-100 ms of
    CPU on the test machine), even for a client that only ever speaks HTTP to loopback; a run
    builds thousands (every FhirClient, every app's worklist and CDS clients, every `httpx.get`).
    In the test process the default one (verify=True, no client certificate) is built once per
    CA setting and shared, as httpx's docs suggest doing with `verify=<context>`; any other
    `verify`/`cert` still gets its own. Child processes (servers, workers) are not affected."""
    build = httpx_transports.create_ssl_context

    @functools.cache
    def default_context(trust_env: bool, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
        return build(verify=True, cert=None, trust_env=trust_env)

    def shared(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is True and cert is None:
            return default_context(trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        return build(verify=verify, cert=cert, trust_env=trust_env)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx_transports, "create_ssl_context", shared)
        yield


@pytest.fixture(scope="session", autouse=True)
def _one_dev_signing_key() -> Iterator[None]:
    """Each app in dev mode makes a 2048-bit RSA key for its DevIssuer (about 0.1 s of CPU here),
    and the API tests build an app per test. In the test process they share one key, made at the
    first use; each issuer keeps its own random kid, and its verifier refuses any other kid, so
    a token from one app is still refused by another. Only api.auth's `rsa` is replaced: keys
    made elsewhere (a test's own "stranger" key, the SMART test server's) stay fresh."""

    @functools.cache
    def dev_key(public_exponent: int, key_size: int) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=public_exponent, key_size=key_size)

    def generate_private_key(public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
        return dev_key(public_exponent, key_size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api.auth, "rsa", types.SimpleNamespace(generate_private_key=generate_private_key))
        yield


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory: Path = tmp_path_factory.mktemp("store")
    with sqlite_database(directory) as url:
        yield url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL: every test using it runs on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(scope="session")
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(db_engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test."""
    with rollback_session(db_engine) as session:
        yield session


@pytest.fixture(scope="session")
def fhir_sandbox() -> Iterator[FhirSandbox]:
    """One real FHIR server (Medplum's router on loopback) for the session; reset it per test
    with `fhir_sandbox.reset()` where a test needs an empty server."""
    with FhirSandbox() as sandbox:
        yield sandbox


SANDBOX_TOKEN = "sandbox-bearer-token"


@pytest.fixture(scope="session")
def protected_fhir_sandbox() -> Iterator[FhirSandbox]:
    """A second sandbox that, like a real EHR, refuses requests without `Bearer SANDBOX_TOKEN`."""
    with FhirSandbox(require_token=SANDBOX_TOKEN) as sandbox:
        yield sandbox
