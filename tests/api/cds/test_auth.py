"""How CDS Hooks calls are refused: no JWT, a bad signature, expired, for another endpoint, another
key set, no jti, a user's token, a FHIR server other than the configured EHR."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from fhir_adapters.jwks import generate_key
from tests.api.cds.conftest import App, AppFactory, Signer
from tests.utils.cds import BASE, auth, hook_body, new_patient_id, sign_with

PATH = "/cds-services/patient-view"


@pytest.fixture
async def cds(sqlite_cds_apps: AppFactory) -> AsyncIterator[App]:
    async with sqlite_cds_apps() as pair:
        yield pair


def _wrong_key() -> str:
    return sign_with(generate_key("ES384"), BASE + PATH)


CASES = {
    "expired": (lambda sign: sign(PATH, issued=time.time() - 600), "expired"),
    "wrong-aud": (lambda sign: sign("/cds-services/order-sign"), "audience"),
    "bad-signature": (lambda sign: _wrong_key(), "signature"),
    "too-long-lived": (lambda sign: sign(PATH, lifetime=3600), "longer"),
    "no-jti": (lambda sign: sign(PATH, jti=None), "jti"),
    "other-jku": (lambda sign: sign(PATH, headers={"jku": "https://attacker.example/jwks"}), "jku"),
    "other-client": (lambda sign: sign(PATH, sub="someone-else"), "sub"),
    "not-a-jwt": (lambda sign: "not-a-jwt", "not a JWT"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_jwt_is_refused_with_the_reason(cds: App, sign: Signer, case: str) -> None:
    _, client = cds
    make, reason = CASES[case]
    response = await client.post(PATH, json=hook_body("patient-view", new_patient_id(), prefetch={}),
                                 headers=auth(make(sign)))
    assert response.status_code == 401, response.text
    assert reason.lower() in response.json()["detail"].lower()


async def test_missing_jwt_is_refused(cds: App) -> None:
    _, client = cds
    response = await client.post(PATH, json=hook_body("patient-view", new_patient_id(), prefetch={}))
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


async def test_a_users_token_does_not_open_the_hooks(cds: App) -> None:
    app, client = cds
    admin = app.state.worklist.dev_issuer.issue("admin.a", ("admin", "ehr_system"), ())
    response = await client.post(PATH, json=hook_body("patient-view", new_patient_id(), prefetch={}),
                                 headers=auth(admin))
    assert response.status_code == 401


async def test_other_fhir_server_is_refused(cds: App, sign: Signer) -> None:
    _, client = cds
    body = hook_body("patient-view", new_patient_id(), fhir_server="https://elsewhere.example/fhir")
    response = await client.post(PATH, json=body, headers=auth(sign(PATH)))
    assert response.status_code == 400
    assert "fhirServer" in response.json()["detail"]


async def test_the_ehrs_jwt_opens_no_user_route(cds: App, sign: Signer) -> None:
    _, client = cds
    response = await client.get("/worklist?ward=4B", headers=auth(sign("/worklist")))
    assert response.status_code == 401


async def test_a_jwt_is_accepted_once(cds: App, sign: Signer) -> None:
    """The spec's jti is there against replay: a second call with the same JWT is refused."""
    _, client = cds
    token = sign(PATH)
    body = hook_body("patient-view", new_patient_id(), prefetch={"patient": None})
    first = await client.post(PATH, json=body, headers=auth(token))
    again = await client.post(PATH, json=body, headers=auth(token))
    assert (first.status_code, again.status_code) == (200, 401)
    assert "already used" in again.json()["detail"]
