"""The EHR signs every CDS Hooks call with a JWT: checked against its configured JWKS, issuer and
the URL it called (`aud`), then against the permission matrix (`api.access`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlmodel import Session

from api.access import EHR_SYSTEM, PERMISSIONS, Route, record_access
from api.auth import InvalidToken, JwksCache, Principal, TokenVerifier
from flows.settings import CdsSettings
from store.cds import first_use_of_jwt
from store.db import session_scope


@dataclass
class EhrVerifier:
    """Checks a CDS Hooks JWT: signed by a key of the EHR's JWKS (no other `jku`), issued by the
    configured EHR (and client), for this very endpoint, short-lived, with a `jti`."""

    settings: CdsSettings
    keys: JwksCache | None

    async def verify(self, token: str, audience: str) -> tuple[Principal, str, datetime]:
        """The EHR as a principal (subject `ehr:<sub>`), the JWT's id and expiry; or InvalidToken
        saying what is wrong."""
        if self.keys is None or not self.settings.issuer:
            raise InvalidToken("CDS Hooks is not configured: set ERAS_CDS_ISSUER and ERAS_CDS_JWKS_URL")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the CDS Hooks authorization is not a JWT") from None
        jku = header.get("jku")
        if jku is not None and jku != self.settings.jwks_url:
            raise InvalidToken("the JWT names a key set (jku) other than the EHR's configured JWKS")
        verifier = TokenVerifier(issuer=self.settings.issuer, audience=audience, keys=self.keys.key,
                                 max_lifetime=self.settings.max_token_lifetime_seconds)
        principal = await verifier.verify(token)
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        if not claims.get("jti"):
            raise InvalidToken("the JWT has no jti (the spec requires one per call)")
        sub = principal.subject
        if self.settings.client_id and sub != self.settings.client_id:
            raise InvalidToken("the JWT's sub is not the EHR client configured (ERAS_CDS_CLIENT_ID)")
        ehr = Principal(subject=f"ehr:{sub}", roles=frozenset({EHR_SYSTEM}), wards=frozenset())
        return ehr, str(claims["jti"]), datetime.fromtimestamp(claims["exp"], UTC)


def endpoint_url(request: Request, public_url: str | None) -> str:
    """The URL the EHR called, as it knows it: the configured public URL, else the request's."""
    base = public_url.rstrip("/") if public_url else str(request.base_url).rstrip("/")
    return base + request.url.path


def ehr_allowed(route: Route) -> Callable[..., Any]:
    """A dependency: the EHR, if its JWT is valid for the URL called and the matrix lets the
    EHR system use `route`; 401 with the reason otherwise."""

    async def dependency(request: Request) -> Principal:
        state = request.app.state.cds
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("a CDS Hooks call needs Authorization: Bearer <JWT signed by the EHR>")
        try:
            ehr, jti, expires = await state.verifier.verify(
                token.strip(), endpoint_url(request, state.settings.public_url))
        except InvalidToken as error:
            raise _unauthorized(str(error)) from None
        if not await run_in_threadpool(_first_use, request.app.state.engine, jti, expires):
            raise _unauthorized("the JWT was already used (its jti was seen before): sign a new one per call")
        if EHR_SYSTEM not in PERMISSIONS[route]:
            def refuse() -> None:
                with Session(request.app.state.engine) as session:
                    record_access(session, ehr, action="call", resource=request.url.path,
                                  purpose=route.value, outcome="denied")
                    session.commit()
            await run_in_threadpool(refuse)
            raise HTTPException(status_code=403, detail="the EHR system may not use this route")
        return ehr

    return dependency


def _first_use(engine: Engine, jti: str, expires: datetime) -> bool:
    with session_scope(engine) as session:
        return first_use_of_jwt(session=session, jti=jti, expires_at=expires, at=datetime.now(UTC))


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
