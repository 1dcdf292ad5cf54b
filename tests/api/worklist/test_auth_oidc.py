"""OIDC tokens checked against a JWKS served by a local identity-provider app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from api.auth import InvalidToken, JwksCache, TokenVerifier
from tests.api.conftest import api_app
from tests.utils.loopback import serve

ISSUER = "https://idp.test"
AUDIENCE = "eras"


@pytest.fixture(scope="module")
def idp_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@contextmanager
def identity_provider(key: rsa.RSAPrivateKey) -> Iterator[tuple[str, FastAPI]]:
    """A local identity provider serving `key` as its JWKS, counting the fetches."""
    idp = FastAPI()
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk = {**public, "kid": "k1", "alg": "RS256"}
    idp.state.fetches = 0

    @idp.get("/jwks")
    def jwks() -> dict[str, Any]:
        idp.state.fetches += 1
        return {"keys": [jwk]}

    with serve(idp) as base:
        yield f"{base}/jwks", idp


@pytest.fixture(scope="module")
def jwks_url(idp_key: rsa.RSAPrivateKey) -> Iterator[str]:
    with identity_provider(idp_key) as (url, _):
        yield url


def _token(key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "n1",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
        "roles": ["nurse"],
        "wards": ["4B"],
    } | overrides
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": overrides.pop("kid", "k1")})


def _verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=JwksCache(url=jwks_url).key)


async def test_verify_valid_token_gives_roles_and_wards(idp_key: rsa.RSAPrivateKey, jwks_url: str) -> None:
    principal = await _verifier(jwks_url).verify(_token(idp_key))
    assert principal.subject == "n1"
    assert principal.roles == frozenset({"nurse"})
    assert principal.wards == frozenset({"4B"})


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 60},
        {"iss": "https://other.test"},
        {"aud": "someone-else"},
    ],
)
async def test_verify_bad_claim_is_refused(
    idp_key: rsa.RSAPrivateKey, jwks_url: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(InvalidToken):
        await _verifier(jwks_url).verify(_token(idp_key, **overrides))


async def test_verify_other_key_is_refused(jwks_url: str) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken):
        await _verifier(jwks_url).verify(_token(stranger))


async def test_jwks_cache_fetches_once(idp_key: rsa.RSAPrivateKey, jwks_url: str) -> None:
    cache = JwksCache(url=jwks_url)
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=cache.key)
    first = await cache.key("k1")
    await verifier.verify(_token(idp_key))
    assert await cache.key("k1") is first


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counting_idp(idp_key: rsa.RSAPrivateKey) -> Iterator[tuple[str, FastAPI]]:
    """A fresh identity provider, so that a test counts only its own JWKS fetches."""
    with identity_provider(idp_key) as served:
        yield served


async def test_jwks_unknown_kids_refetch_at_most_once_per_interval(
    idp_key: rsa.RSAPrivateKey, counting_idp: tuple[str, FastAPI]
) -> None:
    url, idp = counting_idp
    clock = FakeClock()
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE,
                             keys=JwksCache(url=url, ttl=300, min_refetch=60, clock=clock).key)
    await verifier.verify(_token(idp_key))  # first fetch
    for n in range(20):  # 20 forged kids within the interval: no fetch at all
        clock.now += 1
        with pytest.raises(InvalidToken):
            await verifier.verify(_token(idp_key, kid=f"forged-{n}"))
    assert idp.state.fetches == 1
    clock.now += 60  # t = 80 s after the first fetch: an unknown kid may refetch, once
    for n in range(5):
        with pytest.raises(InvalidToken):
            await verifier.verify(_token(idp_key, kid=f"later-{n}"))
    assert idp.state.fetches == 2
    await verifier.verify(_token(idp_key))  # the known key needs no fetch
    assert idp.state.fetches == 2


@pytest.mark.parametrize(("lifetime", "accepted"), [(3600, True), (8 * 3600, True), (8 * 3600 + 1, False),
                                                    (365 * 86400, False)])
async def test_token_lifetime_is_capped(
    idp_key: rsa.RSAPrivateKey, jwks_url: str, lifetime: int, accepted: bool
) -> None:
    now = int(time.time())
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, keys=JwksCache(url=jwks_url).key,
                             max_lifetime=8 * 3600)
    token = _token(idp_key, iat=now - 10, exp=now - 10 + lifetime)
    if accepted:
        assert (await verifier.verify(token)).subject == "n1"
    else:
        with pytest.raises(InvalidToken):
            await verifier.verify(token)


async def test_token_without_iat_is_refused(idp_key: rsa.RSAPrivateKey, jwks_url: str) -> None:
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "n1", "exp": int(time.time()) + 600},
                       idp_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken):
        await _verifier(jwks_url).verify(token)


async def test_ward_claim_string_with_spaces_is_one_ward_over_http(
    idp_key: rsa.RSAPrivateKey, jwks_url: str, sqlite_url: str
) -> None:
    oidc = {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks_url": jwks_url}
    app = api_app(sqlite_url, worklist=oidc)
    headers = {"Authorization": f"Bearer {_token(idp_key, wards='Ward 5A')}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
            own = await http.get("/worklist", params={"ward": "Ward 5A"}, headers=headers)
            part = await http.get("/worklist", params={"ward": "5A"}, headers=headers)
    assert (own.status_code, part.status_code) == (200, 403)
