"""SMART Backend Services against a local token endpoint that verifies our assertions."""

from __future__ import annotations

import asyncio

import httpx
import jwt
import pytest
import respx

from fhir_adapters.auth import (
    BearerTokenAuth,
    SmartBackendAuth,
    generate_key,
    public_jwk,
)
from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirAuthError
from fhir_adapters.jwks import jwks_document, private_key_pem

CLIENT_ID = "eras-engine"


def _smart_auth(server, algorithm: str = "RS384", *, discover: bool = False) -> SmartBackendAuth:
    """An auth whose public key the server trusts, sharing the server's clock."""
    key = generate_key(algorithm)
    kid = f"key-{algorithm.lower()}"
    server.state.register(CLIENT_ID, jwks_document([public_jwk(key, kid, algorithm)]))
    return SmartBackendAuth(
        CLIENT_ID,
        private_key_pem(key),
        kid,
        algorithm,
        token_url=None if discover else server.token_url,
        fhir_base_url=server.fhir_base,
        clock=server.state.clock,
    )


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
async def test_smart_backend_auth_assertion_accepted(smart_server, algorithm: str) -> None:
    auth = _smart_auth(smart_server, algorithm)
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        patient = await client.read("Patient", "p1")
    assert patient == {"resourceType": "Patient", "id": "p1"}
    assert smart_server.state.token_calls == 1
    claims = smart_server.state.claims[0]
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == smart_server.token_url
    assert claims["exp"] - claims["iat"] <= 300
    header = jwt.get_unverified_header(smart_server.state.assertions[0])
    assert header == {"alg": algorithm, "kid": f"key-{algorithm.lower()}", "typ": "JWT"}


async def test_smart_backend_auth_token_cached(smart_server) -> None:
    auth = _smart_auth(smart_server)
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        await client.read("Patient", "p1")
        await client.read("Patient", "p2")
    assert smart_server.state.token_calls == 1
    assert smart_server.state.fhir_calls == 2


async def test_smart_backend_auth_renewed_before_expiry(smart_server) -> None:
    auth = _smart_auth(smart_server)
    clock = smart_server.state.clock
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        await client.read("Patient", "p1")
        clock.advance(200)  # 100 s left: still fresh
        await client.read("Patient", "p1")
        assert smart_server.state.token_calls == 1
        clock.advance(50)  # 50 s left: renew now rather than fail mid-request
        await client.read("Patient", "p1")
    assert smart_server.state.token_calls == 2
    assert len(smart_server.state.seen_jti) == 2
    assert client.round_trips == 3


async def test_smart_backend_auth_discovers_token_endpoint(smart_server) -> None:
    auth = _smart_auth(smart_server, discover=True)
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        await client.read("Patient", "p1")
        smart_server.state.clock.advance(280)
        await client.read("Patient", "p1")
    assert auth.token_url == smart_server.token_url
    assert smart_server.state.discovery_calls == 1
    assert smart_server.state.token_calls == 2


async def test_smart_backend_auth_concurrent_requests_share_one_token(smart_server) -> None:
    auth = _smart_auth(smart_server, "ES384")
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        patients = await asyncio.gather(*(client.read("Patient", f"p{i}") for i in range(10)))
    assert len(patients) == 10
    assert smart_server.state.token_calls == 1


async def test_smart_backend_auth_401_refreshes_once_and_retries(smart_server) -> None:
    auth = _smart_auth(smart_server)
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        await client.read("Patient", "p1")
        smart_server.state.tokens.clear()  # the EHR revoked every token
        patient = await client.read("Patient", "p1")
    assert patient["id"] == "p1"
    assert smart_server.state.token_calls == 2
    assert client.round_trips == 3


async def test_smart_backend_auth_persistent_401_raises_auth_error(smart_server) -> None:
    auth = _smart_auth(smart_server)
    smart_server.state.expires_in = 0  # every token the server issues is already dead
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        with pytest.raises(FhirAuthError) as caught:
            await client.read("Patient", "p1")
    assert "(401): bad token" in str(caught.value)
    assert CLIENT_ID in str(caught.value)
    assert client.round_trips == 2


async def test_token_endpoint_rejects_reused_jti(smart_server) -> None:
    auth = _smart_auth(smart_server)
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        await client.read("Patient", "p1")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": smart_server.state.assertions[0],
    }
    async with httpx.AsyncClient() as http:
        replay = await http.post(smart_server.token_url, data=form)
    assert replay.status_code == 400
    assert "jti" in replay.json()["error_description"]


async def test_smart_backend_auth_unknown_client_raises_auth_error(smart_server) -> None:
    auth = _smart_auth(smart_server)
    smart_server.state.jwks.clear()
    async with FhirClient(smart_server.fhir_base, auth=auth) as client:
        with pytest.raises(FhirAuthError) as caught:
            await client.read("Patient", "p1")
    message = str(caught.value)
    assert smart_server.token_url in message
    assert "invalid_client: unknown client 'eras-engine'" in message
    assert caught.value.error == "invalid_client"
    assert client.round_trips == 0


async def test_smart_backend_auth_token_endpoint_down_raises_auth_error(closed_port_url) -> None:
    token_url = f"{closed_port_url}/auth/token"
    auth = SmartBackendAuth(CLIENT_ID, generate_key("ES384"), "k1", "ES384", token_url=token_url)
    async with FhirClient("https://ehr.example/fhir", auth=auth) as client:
        with pytest.raises(FhirAuthError) as caught:
            await client.read("Patient", "p1")
    assert token_url in str(caught.value)
    assert caught.value.token_url == token_url


@respx.mock
async def test_smart_backend_auth_token_response_not_json_raises_auth_error() -> None:
    token_url = "https://ehr.example/oauth2/token"
    respx.post(token_url).respond(200, text="<html>login</html>")
    auth = SmartBackendAuth(CLIENT_ID, generate_key("RS384"), "k1", token_url=token_url)
    async with FhirClient("https://ehr.example/fhir", auth=auth) as client:
        with pytest.raises(FhirAuthError, match="without an access_token"):
            await client.read("Patient", "p1")


@respx.mock
async def test_smart_backend_auth_discovery_without_token_endpoint_raises_auth_error() -> None:
    respx.get("https://ehr.example/fhir/.well-known/smart-configuration").respond(json={})
    auth = SmartBackendAuth(
        CLIENT_ID, generate_key("RS384"), "k1", fhir_base_url="https://ehr.example/fhir/"
    )
    async with FhirClient("https://ehr.example/fhir", auth=auth) as client:
        with pytest.raises(FhirAuthError, match="smart-configuration names no token_endpoint"):
            await client.read("Patient", "p1")


def test_smart_backend_auth_key_algorithm_mismatch_refused() -> None:
    with pytest.raises(ValueError, match="cannot sign ES384"):
        SmartBackendAuth(CLIENT_ID, generate_key("RS384"), "k1", "ES384", token_url="https://x/t")


def test_smart_backend_auth_unsupported_algorithm_refused() -> None:
    with pytest.raises(ValueError, match="Unsupported signing algorithm"):
        SmartBackendAuth(CLIENT_ID, generate_key("RS384"), "k1", "RS256", token_url="https://x/t")


@respx.mock
async def test_bearer_token_auth_sends_header() -> None:
    route = respx.get("https://ehr.example/fhir/Patient/p1").respond(
        json={"resourceType": "Patient", "id": "p1"}
    )
    async with FhirClient("https://ehr.example/fhir", auth=BearerTokenAuth("abc")) as client:
        await client.read("Patient", "p1")
    assert route.calls.last.request.headers["Authorization"] == "Bearer abc"


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_jwks_document_verifies_signed_jwt(algorithm: str) -> None:
    key = generate_key(algorithm)
    document = jwks_document([public_jwk(key, "k1", algorithm)])
    token = jwt.encode({"sub": "x"}, key, algorithm=algorithm, headers={"kid": "k1"})
    signing_key = jwt.PyJWKSet.from_dict(document)["k1"]
    assert jwt.decode(token, signing_key.key, algorithms=[algorithm]) == {"sub": "x"}
    assert "d" not in document["keys"][0]


def test_jwks_document_private_key_refused() -> None:
    key = generate_key("ES384")
    private = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True) | {"kid": "k1"}
    with pytest.raises(ValueError, match="private members"):
        jwks_document([private])
