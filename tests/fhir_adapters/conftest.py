"""A local SMART token endpoint and tiny FHIR server, served by uvicorn, for auth tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fhir_adapters.auth import CLIENT_ASSERTION_TYPE

MAX_ASSERTION_LIFETIME_S = 300


class FakeClock:
    """A clock shared by the client and the server, advanced by tests."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SmartServerState:
    """What the server knows and counts; replaced for every test."""

    clock: FakeClock
    jwks: dict[str, jwt.PyJWKSet] = field(default_factory=dict)
    seen_jti: set[str] = field(default_factory=set)
    tokens: dict[str, float] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)
    assertions: list[str] = field(default_factory=list)
    expires_in: int = 300
    token_calls: int = 0
    discovery_calls: int = 0
    fhir_calls: int = 0

    def register(self, client_id: str, jwks: dict[str, Any]) -> None:
        self.jwks[client_id] = jwt.PyJWKSet.from_dict(jwks)


@dataclass
class SmartServer:
    """The running server: its URLs and the current test's state."""

    app: FastAPI
    base_url: str

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"

    @property
    def state(self) -> SmartServerState:
        return self.app.state.smart


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _verify_assertion(state: SmartServerState, assertion: str, token_url: str) -> dict[str, Any]:
    """The assertion's claims, or ValueError saying why the client is not trusted."""
    header = jwt.get_unverified_header(assertion)
    unverified = jwt.decode(assertion, options={"verify_signature": False})
    keys = state.jwks.get(unverified.get("iss", ""))
    if keys is None:
        raise ValueError(f"unknown client {unverified.get('iss')!r}")
    key = next((k for k in keys.keys if k.key_id == header.get("kid")), None)
    if key is None or header.get("typ") != "JWT" or header.get("alg") != key.algorithm_name:
        raise ValueError("unknown key id, wrong alg or typ")
    claims = jwt.decode(
        assertion,
        key.key,
        algorithms=[key.algorithm_name],
        audience=token_url,
        # Time claims are checked below against the test's clock, not the wall clock.
        options={
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
            "require": ["iss", "sub", "aud", "exp", "jti"],
        },
    )
    now = state.clock()
    if claims["sub"] != claims["iss"]:
        raise ValueError("sub must equal iss")
    if not now < claims["exp"] <= now + MAX_ASSERTION_LIFETIME_S:
        raise ValueError("exp must be in the future and at most five minutes away")
    if claims.get("iat", now) > now:
        raise ValueError("iat is in the future")
    if claims["jti"] in state.seen_jti:
        raise ValueError("jti was already used")
    state.seen_jti.add(claims["jti"])
    return claims


def build_app(base_url_holder: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/fhir/.well-known/smart-configuration")
    async def smart_configuration() -> dict[str, Any]:
        app.state.smart.discovery_calls += 1
        return {"token_endpoint": f"{base_url_holder[0]}/auth/token", "capabilities": []}

    @app.post("/auth/token")
    async def token(request: Request) -> JSONResponse:
        state: SmartServerState = app.state.smart
        state.token_calls += 1
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "use client_credentials")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return _oauth_error("invalid_request", "wrong client_assertion_type")
        assertion = form.get("client_assertion", "")
        try:
            claims = _verify_assertion(state, assertion, f"{base_url_holder[0]}/auth/token")
        except (ValueError, jwt.PyJWTError) as exc:
            return _oauth_error("invalid_client", str(exc))
        state.claims.append(claims)
        state.assertions.append(assertion)
        access_token = f"token-{claims['jti']}"
        state.tokens[access_token] = state.clock() + state.expires_in
        body = {"access_token": access_token, "token_type": "bearer", "scope": form.get("scope")}
        return JSONResponse({**body, "expires_in": state.expires_in})

    @app.get("/fhir/Patient/{patient_id}")
    async def read_patient(patient_id: str, request: Request) -> JSONResponse:
        state: SmartServerState = app.state.smart
        state.fhir_calls += 1
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if state.tokens.get(token, 0) <= state.clock():
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "login", "diagnostics": "bad token"}],
            }
            return JSONResponse(outcome, status_code=401)
        return JSONResponse({"resourceType": "Patient", "id": patient_id})

    return app


@pytest.fixture(scope="session")
def _smart_server_running() -> Iterator[SmartServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build_app([base_url])
    app.state.smart = SmartServerState(clock=FakeClock())
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the test SMART server did not start"
    yield SmartServer(app=app, base_url=base_url)
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def smart_server(_smart_server_running: SmartServer) -> SmartServer:
    """The shared server with fresh state (keys, tokens, counters, clock) for this test."""
    _smart_server_running.app.state.smart = SmartServerState(clock=FakeClock())
    return _smart_server_running


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class RecordedSleeps(list[float]):
    """A fake asyncio.sleep that records how long the client wanted to wait."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()
