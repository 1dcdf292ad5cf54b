"""SMART App Launch end to end: a real browser-like client through the app and the SMART server.

Every launch goes /launch -> the server's /authorize -> /launch/callback -> the landing page,
over real HTTP on loopback, with the app's state and sessions in the database (both databases).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session

from api.auth import SESSION_COOKIE
from api.smart.launch import digest
from store.models import SmartLaunch, SmartSession
from tests.api.conftest import api_app
from tests.api.smart.conftest import age_session, smart_settings
from tests.utils.loopback import free_port, serve
from tests.utils.smart_server import CLIENT_ID, SmartServer, pkce_challenge, smart_server


def _ward() -> str:
    return f"W{uuid.uuid4().hex[:6]}"


def _landing(response: httpx.Response) -> str:
    """Where the launch sent the browser (the patient page itself is not this branch's)."""
    assert [r.status_code for r in response.history][-1] == 303, response.text
    return str(response.history[-1].headers["location"])


def _started(browser: httpx.Client, smart: SmartServer, **context: str) -> tuple[str, str]:
    """A launch sent to the authorize endpoint, not followed: its URL and its state."""
    started = browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(**context)},
                          follow_redirects=False)
    location = started.headers["location"]
    return location, parse_qs(urlsplit(location).query)["state"][0]


def test_ehr_launch_with_patient_opens_the_patient_page_with_a_session(
    smart: SmartServer, browser: httpx.Client
) -> None:
    ward = _ward()
    smart.grant.wards = [ward]
    launch = smart.launch(patient="pt-42", encounter="enc-7")

    response = browser.get("/launch", params={"iss": smart.iss, "launch": launch})

    assert _landing(response) == "/ui/patients/pt-42"
    asked = smart.authorize_requests[-1]
    assert asked["aud"] == smart.iss and asked["launch"] == launch and asked["client_id"] == CLIENT_ID
    assert asked["code_challenge_method"] == "S256" and len(asked["state"]) >= 32
    assert set(asked["scope"].split()) >= {"launch", "openid", "fhirUser", "patient/*.rs"}
    # The session is a principal: the EHR's "RN" is the engine's nurse, on the claimed ward only.
    assert browser.get(f"/worklist?ward={ward}").status_code == 200
    assert browser.get(f"/worklist?ward={_ward()}").status_code == 403
    assert browser.get("/audit/compliance?pathway=lumbar_fusion").status_code == 403


def test_session_cookie_is_opaque_http_only_and_lax_on_loopback(
    smart: SmartServer, browser: httpx.Client, store: Engine
) -> None:
    response = browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(patient="pt-1")})
    attributes = _attributes(response.history[-1], SESSION_COOKIE)
    assert {"httponly", "samesite=lax", "path=/"} <= attributes and "secure" not in attributes  # loopback
    cookie = next(c for c in browser.cookies.jar if c.name == SESSION_COOKIE)
    assert "." not in (cookie.value or "")  # an opaque id, not a JWT
    with Session(store) as session:
        assert session.get(SmartSession, cookie.value) is None  # the table keeps only its hash
        assert session.get(SmartSession, digest(cookie.value or "")) is not None


async def test_cookies_inside_the_ehrs_frame_are_secure_and_same_site_none(
    sqlite_url: str, smart: SmartServer
) -> None:
    app = api_app(sqlite_url, smart=smart_settings(smart), ehr_origin="https://ehr.example")
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://eras.hospital.example"
    ) as client:
        response = await client.get("/launch", params={"iss": smart.iss, "launch": smart.launch()})

    assert response.status_code == 302
    assert {"httponly", "secure", "samesite=none", "path=/launch"} <= _attributes(response, "eras_launch")


def _attributes(response: httpx.Response, name: str) -> set[str]:
    """The attributes of the cookie `name` that `response` sets, lower-cased."""
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}="))
    return {part.strip().lower() for part in header.split(";")[1:]}


def test_standalone_launch_uses_the_configured_server(smart: SmartServer, browser: httpx.Client) -> None:
    response = browser.get("/launch")

    assert _landing(response) == "/ui/worklist"
    asked = smart.authorize_requests[-1]
    assert "launch" not in asked and "launch/patient" in asked["scope"].split()
    assert asked["aud"] == smart.iss


def test_location_context_opens_that_wards_worklist(smart: SmartServer, browser: httpx.Client) -> None:
    ward = _ward()
    launch = smart.launch(fhirContext=[{"reference": f"Location/{ward}"}])

    response = browser.get("/launch", params={"iss": smart.iss, "launch": launch})

    assert _landing(response) == f"/ui/worklist?ward={ward}"
    assert browser.get(f"/worklist?ward={ward}").status_code == 200  # the EHR vouched for the ward


def test_wrong_state_is_refused(smart: SmartServer, browser: httpx.Client) -> None:
    response = browser.get("/launch/callback", params={"code": "c", "state": "not-a-state-we-sent"})

    assert response.status_code == 403
    assert "unknown state" in response.text and SESSION_COOKIE not in browser.cookies


def test_replayed_callback_is_refused(smart: SmartServer, browser: httpx.Client) -> None:
    first = browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(patient="pt-2")})
    callback = next(str(r.url) for r in first.history if r.url.path == "/launch/callback")
    browser.cookies.clear()

    again = browser.get(callback)

    assert again.status_code == 403 and "already used" in again.text
    assert SESSION_COOKIE not in browser.cookies


def test_callback_in_another_browser_is_refused(smart: SmartServer, browser: httpx.Client, eras: str) -> None:
    authorize, _state = _started(browser, smart)
    with httpx.Client() as attacker_ehr:
        to_callback = attacker_ehr.get(authorize)
    with httpx.Client(base_url=eras) as victim:  # lacks the cookie the launch set in `browser`
        response = victim.get(to_callback.headers["location"])

    assert response.status_code == 403 and "another browser" in response.text
    assert SESSION_COOKIE not in victim.cookies


def test_refused_scope_gives_a_clear_error(smart: SmartServer, browser: httpx.Client) -> None:
    smart.grant.withhold_scopes = {"fhirUser"}

    response = browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(patient="pt-3")})

    assert response.status_code == 403
    assert "did not grant the scopes this app needs: fhirUser" in response.text
    assert SESSION_COOKIE not in browser.cookies


def test_expired_id_token_is_refused(smart: SmartServer, browser: httpx.Client) -> None:
    smart.grant.id_token_age, smart.grant.id_token_life = 600, 300  # expired five minutes ago

    response = browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(patient="pt-4")})

    assert response.status_code == 401 and "expired" in response.text
    assert SESSION_COOKIE not in browser.cookies


def test_already_expired_access_token_is_refused(smart: SmartServer, browser: httpx.Client) -> None:
    smart.grant.expires_in = 0

    response = browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(patient="pt-5")})

    assert response.status_code == 401 and "access token has already expired" in response.text


def test_expired_session_is_refused(smart: SmartServer, browser: httpx.Client, store: Engine) -> None:
    ward = _ward()
    smart.grant.wards = [ward]
    browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch()})
    assert browser.get(f"/worklist?ward={ward}").status_code == 200
    age_session(store, browser, expires_at=datetime.now(UTC) - timedelta(seconds=1))

    response = browser.get(f"/worklist?ward={ward}")

    assert response.status_code == 401 and "session has expired" in response.json()["detail"]


def test_unknown_iss_is_refused_before_anything_is_sent_to_it(browser: httpx.Client) -> None:
    with smart_server() as attacker:
        response = browser.get("/launch", params={"iss": attacker.iss, "launch": "x"})
        assert attacker.requests == []  # not even its discovery document was asked for

    assert response.status_code == 403 and attacker.iss in response.text
    assert "ERAS_SMART_ALLOWED_ISSUERS" in response.text


def test_pkce_verifier_mismatch_is_rejected_by_the_server(
    smart: SmartServer, browser: httpx.Client, store: Engine
) -> None:
    authorize, state = _started(browser, smart, patient="pt-6")
    with Session(store) as session:  # what an attacker holding only the code would send
        session.exec(update(SmartLaunch).where(SmartLaunch.state == state)  # type: ignore[arg-type]
                     .values(code_verifier="x" * 64))
        session.commit()

    response = browser.get(authorize)

    assert response.status_code == 401 and "refused the sign-in (invalid_grant)" in response.text
    assert SESSION_COOKIE not in browser.cookies


def test_smart_server_checks_the_pkce_verifier(smart: SmartServer) -> None:
    # The server the launch tests trust must itself refuse a wrong verifier, and accept the right one.
    verifier = "v" * 50
    codes = []
    for _ in range(2):
        asked = httpx.get(f"{smart.base_url}/authorize", params={
            "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": "http://app.test/cb",
            "scope": "openid", "state": "s", "aud": smart.iss, "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256"})
        codes.append(parse_qs(urlsplit(asked.headers["location"]).query)["code"][0])
    form = {"grant_type": "authorization_code", "redirect_uri": "http://app.test/cb", "client_id": CLIENT_ID}

    wrong = httpx.post(f"{smart.base_url}/token", data={**form, "code": codes[0], "code_verifier": "w" * 50})
    right = httpx.post(f"{smart.base_url}/token", data={**form, "code": codes[1], "code_verifier": verifier})

    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert right.status_code == 200 and right.json()["access_token"]


def test_failing_discovery_names_the_server(sqlite_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/fhir"  # nothing listens there; no database is involved
    with serve(api_app(sqlite_url, smart={"allowed_issuers": [dead], "client_id": CLIENT_ID})) as url:
        response = httpx.get(f"{url}/launch", params={"iss": dead, "launch": "x"})

    assert response.status_code == 502
    assert f"{dead}/.well-known/smart-configuration" in response.text


def test_cross_site_form_post_with_the_cookie_is_refused(smart: SmartServer, browser: httpx.Client) -> None:
    browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(patient="pt-8")})

    response = browser.post("/worklist/any-key/complete", content="value=1",
                            headers={"Content-Type": "text/plain"})

    assert response.status_code == 401 and "JSON requests only" in response.json()["detail"]


def test_refusals_are_logged_without_patient_data(
    smart: SmartServer, browser: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    smart.grant.withhold_scopes = {"openid"}
    with caplog.at_level(logging.WARNING, logger="api.smart.routes"):
        browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch(patient="pt-secret-9")})

    lines = [r.getMessage() for r in caplog.records if r.name == "api.smart.routes"]
    assert any("did not grant the scopes this app needs: openid" in line for line in lines), lines
    assert not any("pt-secret-9" in line for line in lines)


def test_unmapped_ehr_roles_grant_nothing(smart: SmartServer, browser: httpx.Client) -> None:
    ward = _ward()
    smart.grant.roles, smart.grant.wards = ["Surgeon", "nurse"], [ward]  # "nurse" is not in the map either

    browser.get("/launch", params={"iss": smart.iss, "launch": smart.launch()})

    assert browser.get(f"/worklist?ward={ward}").status_code == 403


def test_launch_not_finished_in_time_is_refused(
    smart: SmartServer, browser: httpx.Client, store: Engine
) -> None:
    authorize, state = _started(browser, smart)
    with Session(store) as session:
        launch = session.get(SmartLaunch, state)
        assert launch is not None
        launch.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.commit()

    response = browser.get(authorize)

    assert response.status_code == 403 and "expired" in response.text


def test_ehr_refusing_authorization_is_shown(browser: httpx.Client) -> None:
    response = browser.get("/launch/callback", params={"error": "access_denied", "state": "s"})

    assert response.status_code == 403 and "did not authorize the launch (access_denied)" in response.text


def test_confidential_client_sends_its_secret(sqlite_url: str, tmp_path: Path) -> None:
    # Client authentication does not touch the database: SQLite alone.
    secret = tmp_path / "client-secret"
    with smart_server(client_secret="s3cret") as ehr, serve(
        api_app(sqlite_url, smart=smart_settings(ehr, client_secret_file=secret))
    ) as url, httpx.Client(base_url=url, follow_redirects=True) as client:
        outcomes = []
        for written in ("wrong", "s3cret"):  # the file is read at each use: rotation needs no restart
            secret.write_text(written + "\n", encoding="utf-8")
            launch = ehr.launch(patient="pt-c")
            outcomes.append(client.get("/launch", params={"iss": ehr.iss, "launch": launch}))

    assert outcomes[0].status_code == 401 and "(invalid_client)" in outcomes[0].text
    assert _landing(outcomes[1]) == "/ui/patients/pt-c"
