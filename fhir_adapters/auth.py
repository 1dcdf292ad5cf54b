"""How the FHIR client authenticates: nothing, a static bearer token, or SMART Backend Services."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from fhir_adapters.errors import FhirAuthError
from fhir_adapters.jwks import PrivateKey, generate_key, load_private_key, public_jwk

__all__ = [
    "BearerTokenAuth",
    "FhirAuth",
    "NoAuth",
    "SmartBackendAuth",
    "generate_key",
    "public_jwk",
]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Read everything, create and update the resources the engine writes (SMART v2 scopes).
DEFAULT_SCOPE = "system/*.rs system/Task.cu system/CommunicationRequest.cu system/CarePlan.cu"
# SMART caps assertion lifetime at five minutes; stay a little under for clock skew.
ASSERTION_LIFETIME_S = 290
# Servers SHOULD send expires_in; SMART recommends tokens live no longer than five minutes.
DEFAULT_EXPIRES_IN_S = 300.0


class FhirAuth:
    """What the client asks of any authentication scheme; by default it adds nothing."""

    client_id: str | None = None

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        """Headers to send with the next FHIR request (may fetch a token through `http`)."""
        return {}

    async def unauthorized(self, rejected: Mapping[str, str]) -> bool:
        """Forget credentials the FHIR server refused (401); True when one retry may help."""
        return False

    def hint(self) -> str:
        """What to fix when the FHIR server refuses our credentials."""
        return "configure a bearer token or SMART Backend Services credentials"


class NoAuth(FhirAuth):
    """For open servers such as a local test server."""


class BearerTokenAuth(FhirAuth):
    """A token obtained elsewhere, sent unchanged with every request."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def hint(self) -> str:
        return "check that the bearer token is valid, unexpired and grants the needed scopes"


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


class SmartBackendAuth(FhirAuth):
    """SMART Backend Services: client_credentials with a private_key_jwt assertion."""

    def __init__(
        self,
        client_id: str,
        private_key: str | bytes | PrivateKey,
        key_id: str,
        algorithm: str = "RS384",
        *,
        token_url: str | None = None,
        fhir_base_url: str | None = None,
        scope: str = DEFAULT_SCOPE,
        clock: Callable[[], float] = time.time,
        renew_margin: float = 60.0,
    ) -> None:
        if not token_url and not fhir_base_url:
            raise ValueError("SmartBackendAuth needs token_url or fhir_base_url for discovery.")
        self.client_id = client_id
        self.key_id = key_id
        self.algorithm = algorithm
        self.scope = scope
        self._key = load_private_key(private_key, algorithm)
        self._token_url = token_url
        self._fhir_base_url = fhir_base_url.rstrip("/") if fhir_base_url else None
        self._clock = clock
        self._renew_margin = renew_margin
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    @property
    def token_url(self) -> str | None:
        """The token endpoint, once given or discovered."""
        return self._token_url

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.access_token(http)}"}

    async def unauthorized(self, rejected: Mapping[str, str]) -> bool:
        # Only drop the token that was refused: a concurrent request may already have renewed it.
        token = self._token
        if token and rejected.get("Authorization") == f"Bearer {token.value}":
            self._token = None
        return True

    def hint(self) -> str:
        return (
            f"check that client {self.client_id!r} is registered at "
            f"{self._token_url or 'the token endpoint'} with key {self.key_id!r} "
            f"and granted scope {self.scope!r}"
        )

    async def access_token(self, http: httpx.AsyncClient) -> str:
        """A valid access token, fetched once and shared by concurrent callers."""
        token = self._token
        if token is None or not self._fresh(token):
            async with self._lock:
                token = self._token
                if token is None or not self._fresh(token):
                    token = await self._fetch_token(http)
                    self._token = token
        return token.value

    def client_assertion(self, token_url: str) -> str:
        """A signed JWT proving our identity to `token_url`, valid for under five minutes."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        headers = {"kid": self.key_id, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)

    def _fresh(self, token: _Token) -> bool:
        return token.expires_at - self._clock() > self._renew_margin

    async def _fetch_token(self, http: httpx.AsyncClient) -> _Token:
        token_url = await self._token_endpoint(http)
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(token_url),
        }
        requested_at = self._clock()
        try:
            response = await http.post(token_url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise FhirAuthError(
                f"Could not reach the SMART token endpoint {token_url} ({type(exc).__name__}); "
                "check the token URL and that the server is reachable.",
                token_url=token_url,
            ) from exc
        if response.is_error:
            raise self._refusal(token_url, response)
        body = _json_object(response) or {}
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise FhirAuthError(
                f"SMART token endpoint {token_url} answered without an access_token; "
                "check that the token URL points at the OAuth token endpoint.",
                token_url=token_url,
                status=response.status_code,
            )
        return _Token(value, requested_at + _expires_in(body))

    def _refusal(self, token_url: str, response: httpx.Response) -> FhirAuthError:
        body = _json_object(response) or {}
        error = str(body.get("error") or "no error code")
        description = str(body.get("error_description") or "")
        detail = f"{error}: {description}" if description else error
        return FhirAuthError(
            f"SMART token endpoint {token_url} refused client {self.client_id!r} "
            f"({response.status_code} {detail}); check the client id, that public key "
            f"{self.key_id!r} is registered with the EHR, and the requested scopes.",
            token_url=token_url,
            error=body.get("error"),
            error_description=body.get("error_description"),
            status=response.status_code,
        )

    async def _token_endpoint(self, http: httpx.AsyncClient) -> str:
        if self._token_url:
            return self._token_url
        url = f"{self._fhir_base_url}/.well-known/smart-configuration"
        try:
            response = await http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise FhirAuthError(
                f"Could not discover the SMART token endpoint from {url} ({type(exc).__name__}); "
                "pass token_url explicitly or check the FHIR base URL.",
                token_url=url,
            ) from exc
        config = _json_object(response) or {}
        endpoint = config.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise FhirAuthError(
                f"SMART configuration at {url} names no token_endpoint; pass token_url explicitly.",
                token_url=url,
            )
        self._token_url = endpoint
        return endpoint


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _expires_in(body: Mapping[str, Any]) -> float:
    value = body.get("expires_in")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str) and value.isdigit():
        return float(value)
    return DEFAULT_EXPIRES_IN_S
