"""The launch itself: to the authorize endpoint with PKCE, then the code exchanged and checked."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from api.auth import ROLES, InvalidToken, JwksCache, TokenVerifier
from api.smart.discovery import LaunchError, SmartConfiguration
from flows.settings import SmartSettings
from store.models import SmartLaunch, SmartSession

TOKEN_TIMEOUT = 15.0
DEFAULT_EXPIRES_IN = 3600.0  # SMART recommends expires_in; a server that omits it gets an hour
_FHIR_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")


def digest(secret: str) -> str:
    """What the database keeps of a cookie: its SHA-256, so a read of the table gives no cookie."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class Authorize:
    """Where to send the browser, the launch to store, and the cookie binding it to this browser."""

    url: str
    launch: SmartLaunch
    browser: str


def authorize(settings: SmartSettings, config: SmartConfiguration, *, iss: str, launch: str | None,
              redirect_url: str, now: datetime) -> Authorize:
    """The authorize request (PKCE S256, state, aud=iss), and the pending launch it opens."""
    assert settings.client_id
    verifier, state, browser = secrets.token_urlsafe(64), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    params = {
        "response_type": "code", "client_id": settings.client_id, "redirect_uri": redirect_url,
        "scope": settings.scope if launch else settings.standalone_scope, "state": state, "aud": iss,
        "code_challenge": _challenge(verifier), "code_challenge_method": "S256",
    }
    if launch:
        params["launch"] = launch
    endpoint = config.authorization_endpoint
    row = SmartLaunch(state=state, browser_hash=digest(browser), code_verifier=verifier, iss=iss,
                      redirect_url=redirect_url, endpoints=config.as_dict(), created_at=now,
                      expires_at=now + timedelta(seconds=settings.launch_seconds))
    return Authorize(url=f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}", launch=row,
                     browser=browser)


async def exchange(settings: SmartSettings, launch: SmartLaunch, code: str, *,
                   secret: str | None) -> dict[str, Any]:
    """The token response for `code` (public client: client_id in the form; confidential: Basic)."""
    assert settings.client_id
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": launch.redirect_url,
            "code_verifier": launch.code_verifier}
    auth = httpx.BasicAuth(settings.client_id, secret) if secret else httpx.USE_CLIENT_DEFAULT
    if secret is None:
        form["client_id"] = settings.client_id
    url = launch.endpoints["token_endpoint"]
    try:
        async with httpx.AsyncClient(timeout=TOKEN_TIMEOUT) as http:
            response = await http.post(url, data=form, auth=auth, headers={"Accept": "application/json"})
            body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        why = type(error).__name__
        raise LaunchError(f"the token endpoint {url} did not answer ({why})", status=502) from None
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        refusal = body.get("error") if isinstance(body, dict) else None
        raise LaunchError(f"the EHR's token endpoint refused the sign-in ({refusal or response.status_code})",
                          status=401)
    return body


async def verified_session(settings: SmartSettings, launch: SmartLaunch, body: dict[str, Any], *,
                           keys: JwksCache, now: datetime) -> tuple[str, SmartSession]:
    """The session the token response vouches for, and its cookie; LaunchError when it must not be."""
    missing = set(settings.required_scopes.split()) - set(str(body.get("scope", "")).split())
    if missing:
        raise LaunchError(f"the EHR did not grant the scopes this app needs: {' '.join(sorted(missing))}",
                          status=403)
    expires_in = _seconds(body.get("expires_in"))
    if expires_in <= 0:
        raise LaunchError("the EHR's access token has already expired; launch again", status=401)
    verifier = TokenVerifier(issuer=launch.endpoints["issuer"], audience=settings.client_id or "",
                             keys=keys.key, roles_claim=settings.roles_claim,
                             wards_claim=settings.wards_claim)
    try:
        claims = await verifier.claims(str(body.get("id_token", "")))
    except InvalidToken as error:
        raise LaunchError(f"the EHR's id_token was refused: {error}", status=401) from None
    raw = verifier.principal(claims)
    ward = _context_ward(body.get("fhirContext"))
    cookie = secrets.token_urlsafe(32)
    return cookie, SmartSession(
        id_hash=digest(cookie), subject=str(claims.get("fhirUser") or claims["sub"]),
        roles=sorted({settings.role_map[r] for r in raw.roles if settings.role_map.get(r) in ROLES}),
        wards=sorted(raw.wards | ({ward} if ward else set())), iss=launch.iss,
        patient_id=_fhir_id(body.get("patient")), encounter_id=_fhir_id(body.get("encounter")), ward=ward,
        access_token=str(body["access_token"]), token_expires_at=now + timedelta(seconds=expires_in),
        created_at=now, expires_at=now + timedelta(seconds=settings.session_seconds))


def landing(row: SmartSession) -> str:
    """The page a launch opens: the patient in context, else the ward's worklist, else the worklist."""
    if row.patient_id:
        return f"/ui/patients/{row.patient_id}"
    if row.ward:
        return f"/ui/worklist?{urlencode({'ward': row.ward})}"
    return "/ui/worklist"


def _context_ward(context: Any) -> str | None:
    """The ward of a `Location/<id>` in fhirContext: its id, as the worklist names wards by
    the Location's id when the Encounter gives no display (fhir_adapters.facts)."""
    for entry in context if isinstance(context, list) else []:
        reference = entry.get("reference", "") if isinstance(entry, dict) else ""
        if reference.startswith("Location/"):
            return _fhir_id(reference.removeprefix("Location/"))
    return None


def _fhir_id(value: Any) -> str | None:
    # The id ends up in a redirect URL: anything but a FHIR id is refused.
    if value is None:
        return None
    if not isinstance(value, str) or not _FHIR_ID.fullmatch(value):
        raise LaunchError("the EHR's launch context names a resource id that is not a FHIR id", status=502)
    return value


def _seconds(value: Any) -> float:
    if value is None:
        return DEFAULT_EXPIRES_IN
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LaunchError("the EHR's token response has an unreadable expires_in", status=502) from None
