"""Who is calling: OIDC bearer tokens checked against the identity provider's JWKS, roles and wards.

A user launched from the EHR (SMART App Launch, `api/smart/`) is instead known by a session
cookie, which `app.state.sessions` resolves. A development mode signs local tokens with a key
generated at start-up (for the demo only).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ROLES = frozenset({"nurse", "charge_nurse", "physiotherapist", "anaesthetist", "quality", "admin"})
ALGORITHMS = ("RS256", "RS384", "ES256", "ES384")
DEV_ISSUER = "urn:eras:dev"
DEV_AUDIENCE = "eras-worklist"
DEV_TOKEN_SECONDS = 8 * 3600

SESSION_COOKIE = "eras_session"

_bearer = HTTPBearer(auto_error=False)


class InvalidToken(Exception):
    """The token is missing a claim, expired, for someone else, or not signed by a known key."""


@dataclass(frozen=True)
class Principal:
    """A signed-in user: subject, roles and wards, as the identity provider vouched for them."""

    subject: str
    roles: frozenset[str]
    wards: frozenset[str]
    session: str | None = None  # the SMART launch session (its hashed id), when signed in by one


class SessionReader(Protocol):
    """Resolves a session cookie to its principal (InvalidToken when unknown or expired)."""

    async def principal(self, cookie: str) -> Principal: ...


@dataclass
class JwksCache:
    """The identity provider's signing keys, fetched by URL and kept for `ttl` seconds.

    An unknown kid refetches (the provider may have rotated its keys), but never sooner than
    `min_refetch` seconds after the last fetch: tokens with made-up kids cannot make the API
    hammer the identity provider.
    """

    url: str
    ttl: float = 300.0
    min_refetch: float = 60.0
    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    _fetched_at: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key named `kid`, fetching the JWKS when stale or, at most every `min_refetch`
        seconds, when the kid is unknown."""
        async with self._lock:  # concurrent requests wait for one fetch instead of each fetching
            if self._due(kid):
                await self._fetch()
        if kid not in self._keys:
            raise InvalidToken("the token is signed by a key the identity provider does not list")
        return self._keys[kid]

    def _due(self, kid: str) -> bool:
        if self._fetched_at is None:
            return True
        age = self.clock() - self._fetched_at
        return age > self.ttl or (kid not in self._keys and age >= self.min_refetch)

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=10.0) as http:
                response = await http.get(self.url)
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as error:
            self._fetched_at = self.clock()  # a failing provider is not retried on every request
            why = type(error).__name__
            raise InvalidToken(f"the identity provider's keys cannot be fetched ({why})") from None
        self._keys = {jwk["kid"]: jwt.PyJWK(jwk) for jwk in document.get("keys", []) if "kid" in jwk}
        self._fetched_at = self.clock()


@dataclass
class TokenVerifier:
    """Checks signature, issuer, audience and expiry; reads roles and wards from claims."""

    issuer: str
    audience: str
    keys: Callable[[str], Any]
    roles_claim: str = "roles"
    wards_claim: str = "wards"
    max_lifetime: float = 8 * 3600

    async def verify(self, token: str) -> Principal:
        """The principal a valid token names, or InvalidToken."""
        return self.principal(await self.claims(token))

    def principal(self, claims: dict[str, Any]) -> Principal:
        """The subject, roles and wards that verified claims name."""
        return Principal(
            subject=str(claims["sub"]),
            roles=_names(claims.get(self.roles_claim)),
            wards=_wards(claims.get(self.wards_claim)),
        )

    async def claims(self, token: str) -> dict[str, Any]:
        """The claims of a valid token, or InvalidToken."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        if not kid:
            raise InvalidToken("the token names no signing key (kid)")
        key = await self.keys(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"the token was refused: {error}") from None
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise InvalidToken(f"the token lives longer than the {self.max_lifetime:.0f} s accepted")
        return claims


def _wards(value: Any) -> frozenset[str]:
    """A string names one ward ("Ward 5A" is one ward, not two); a list names several."""
    return frozenset({value}) if isinstance(value, str) and value else _names(value)


def _names(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, Iterable):
        return frozenset(str(item) for item in value)
    return frozenset()


class DevIssuer:
    """Signs local tokens with a key made at start-up; its verifier knows only that key."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = f"dev-{uuid.uuid4().hex[:8]}"
        self._public = jwt.PyJWK.from_dict(
            {
                **jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True),
                "kid": self._kid,
                "alg": "RS256",
            }
        )

    def issue(
        self, subject: str, roles: Iterable[str], wards: Iterable[str], *, now: float | None = None
    ) -> str:
        """A token valid for eight hours."""
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": subject,
            "iat": issued,
            "exp": issued + DEV_TOKEN_SECONDS,
            "roles": sorted(roles),
            "wards": sorted(wards),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def verifier(self) -> TokenVerifier:
        """A verifier accepting this issuer's tokens only."""

        async def keys(kid: str) -> jwt.PyJWK:
            if kid != self._kid:
                raise InvalidToken("the token is signed by a key the identity provider does not list")
            return self._public

        return TokenVerifier(issuer=DEV_ISSUER, audience=DEV_AUDIENCE, keys=keys)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, from `Authorization: Bearer <token>` or else a SMART launch's session cookie;
    401 without a valid one."""
    sessions: SessionReader | None = getattr(request.app.state, "sessions", None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if credentials is None and not (cookie and sessions):
        raise _unauthorized("sign in: this endpoint needs a bearer token")
    verifier: TokenVerifier = request.app.state.worklist.verifier
    try:
        if credentials is None:
            assert cookie and sessions
            _refuse_cross_site(request)
            return await sessions.principal(cookie)
        return await verifier.verify(credentials.credentials)
    except InvalidToken as error:
        raise _unauthorized(str(error)) from None


def _refuse_cross_site(request: Request) -> None:
    # A browser sends the cookie with any cross-site form post (SameSite=None inside the EHR's
    # frame); a form cannot send JSON, and a cross-site script sending it needs CORS we never allow.
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise InvalidToken("a session cookie signs JSON requests only (cross-site form posts are refused)")


CurrentUser = Annotated[Principal, Depends(current_user)]

