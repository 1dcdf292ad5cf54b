"""A small SMART authorization server on loopback for launch tests: discovery, authorize, token, JWKS.

It behaves as an EHR's would: `/authorize` approves at once (the user is taken to have signed
in) and redirects with code and state; `/token` checks the client, the redirect URI and the
PKCE verifier before it answers with an access token, an RS256 id_token and the launch context.
With `fhir_upstream`, `<base>/fhir/*` is passed on to that FHIR server (the EHR's FHIR API on
the same origin as its authorization server), so the user's token reaches a real FHIR server.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from tests.utils.loopback import serve

CLIENT_ID = "eras-app"


@dataclass
class Grant:
    """What the next token response says (tests change it before launching)."""

    subject: str = "user-1"
    fhir_user: str = "Practitioner/p-1"
    roles: list[str] = field(default_factory=lambda: ["RN"])
    wards: list[str] = field(default_factory=list)
    withhold_scopes: set[str] = field(default_factory=set)  # asked for, but not granted
    access_token: str = ""  # "" = a random one
    expires_in: int = 3600
    id_token_age: int = 0  # seconds the id_token is back-dated (past its life = expired)
    id_token_life: int = 300
    standalone_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class SmartServer:
    """The server's configuration and what it saw; `base_url` is set while it runs."""

    client_secret: str | None = None  # set: a confidential client (HTTP Basic at /token)
    fhir_upstream: str | None = None
    grant: Grant = field(default_factory=Grant)
    launches: dict[str, dict[str, Any]] = field(default_factory=dict)  # launch id -> context
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every path asked for
    base_url: str = ""
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    _kid: str = field(default_factory=lambda: f"k-{uuid.uuid4().hex[:8]}")

    @property
    def iss(self) -> str:
        """The FHIR base the EHR launches with."""
        return f"{self.base_url}/fhir"

    def reset(self) -> None:
        self.grant = Grant()
        self.launches.clear()
        self.authorize_requests.clear()
        self.requests.clear()

    def launch(self, **context: Any) -> str:
        """A launch id the EHR would put in the launch URL, carrying `context`."""
        launch_id = secrets.token_urlsafe(8)
        self.launches[launch_id] = context
        return launch_id

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self._kid, "alg": "RS256", "use": "sig"}]}

    def id_token(self, scope: set[str]) -> str:
        now = int(time.time()) - self.grant.id_token_age
        claims: dict[str, Any] = {"iss": self.iss, "aud": CLIENT_ID, "sub": self.grant.subject, "iat": now,
                                  "exp": now + self.grant.id_token_life, "roles": self.grant.roles,
                                  "wards": self.grant.wards}
        if "fhirUser" in scope:
            claims["fhirUser"] = self.grant.fhir_user
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def app(self) -> FastAPI:
        return _app(self)


def pkce_challenge(verifier: str) -> str:
    """S256, as RFC 7636 defines it (written here from the RFC, not taken from the app)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


def _app(server: SmartServer) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def note(request: Request, call_next: Any) -> Response:
        server.requests.append(request.url.path)
        response: Response = await call_next(request)
        return response

    @app.get("/fhir/.well-known/smart-configuration")
    async def configuration() -> dict[str, Any]:
        return {"issuer": server.iss, "authorization_endpoint": f"{server.base_url}/authorize",
                "token_endpoint": f"{server.base_url}/token", "jwks_uri": f"{server.base_url}/jwks",
                "code_challenge_methods_supported": ["S256"],
                "capabilities": ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient"]}

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        return server.jwks()

    @app.get("/authorize")
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        server.authorize_requests.append(params)
        _require(params.get("response_type") == "code" and params.get("client_id") == CLIENT_ID,
                 "unauthorized_client")
        _require(params.get("aud") == server.iss, "invalid_request: aud is not this server's FHIR base")
        _require(params.get("code_challenge_method") == "S256" and bool(params.get("code_challenge")),
                 "invalid_request: PKCE S256 is required")
        launch = params.get("launch")
        _require(launch is None or launch in server.launches, "invalid_request: unknown launch")
        context = server.launches[launch] if launch else server.grant.standalone_context
        code = secrets.token_urlsafe(16)
        server._codes[code] = {"challenge": params["code_challenge"], "redirect_uri": params["redirect_uri"],
                               "scope": set(params.get("scope", "").split()), "context": context}
        query = httpx.QueryParams({"code": code, "state": params.get("state", "")})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    @app.post("/token")
    async def token(
        request: Request, grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(),
        code_verifier: str = Form(), client_id: str | None = Form(None),
    ) -> JSONResponse:
        if not _client_ok(server, request, client_id):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        issued = server._codes.pop(code, None)
        if grant_type != "authorization_code" or issued is None or issued["redirect_uri"] != redirect_uri:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if pkce_challenge(code_verifier) != issued["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verifier mismatch"},
                                status_code=400)
        scope = issued["scope"] - server.grant.withhold_scopes
        access = server.grant.access_token or secrets.token_urlsafe(24)
        body = {"access_token": access, "token_type": "Bearer",
                "expires_in": server.grant.expires_in, "scope": " ".join(sorted(scope)),
                "id_token": server.id_token(scope), **issued["context"]}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.api_route("/fhir/{path:path}", methods=["GET", "PUT", "POST"])
    async def fhir(path: str, request: Request) -> Response:
        if server.fhir_upstream is None:
            raise HTTPException(status_code=404)
        headers = {k: v for k, v in request.headers.items() if k.lower() in
                   ("authorization", "content-type", "if-match", "if-none-exist", "accept")}
        async with httpx.AsyncClient() as http:
            upstream = await http.request(request.method, f"{server.fhir_upstream}/{path}",
                                          params=request.query_params, content=await request.body(),
                                          headers=headers)
        passed = ("content-type", "etag", "location")
        kept = {k: v for k, v in upstream.headers.items() if k.lower() in passed}
        return Response(upstream.content, status_code=upstream.status_code, headers=kept)

    return app


def _require(ok: bool, error: str) -> None:
    if not ok:
        raise HTTPException(status_code=400, detail=error)


def _client_ok(server: SmartServer, request: Request, client_id: str | None) -> bool:
    if server.client_secret is None:
        return client_id == CLIENT_ID
    expected = base64.b64encode(f"{CLIENT_ID}:{server.client_secret}".encode()).decode()
    return request.headers.get("authorization") == f"Basic {expected}"


@contextmanager
def smart_server(**options: Any) -> Iterator[SmartServer]:
    """A SmartServer listening on 127.0.0.1 until the block ends."""
    server = SmartServer(**options)
    with serve(server.app()) as base_url:
        server.base_url = base_url
        yield server
