"""The EHR's SMART configuration (`<iss>/.well-known/smart-configuration`), and which iss we trust."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx

DISCOVERY_TIMEOUT = 10.0


class LaunchError(Exception):
    """A launch that cannot go on; the message is shown to the user (no patient data in it)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SmartConfiguration:
    """What a launch needs from the EHR's discovery document."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    issuer: str

    def as_dict(self) -> dict[str, str]:
        return {"authorization_endpoint": self.authorization_endpoint,
                "token_endpoint": self.token_endpoint, "jwks_uri": self.jwks_uri, "issuer": self.issuer}


def normalised(url: str) -> str:
    return url.rstrip("/")


def require_allowed(iss: str | None, allowed: Iterable[str]) -> str:
    """`iss` if it is one of the configured FHIR bases; an attacker-supplied iss is refused
    before any request is sent to it (it would otherwise receive our code and client secret)."""
    if not iss:
        raise LaunchError("the launch names no FHIR server (iss), and no standalone server is configured")
    if normalised(iss) not in {normalised(one) for one in allowed}:
        raise LaunchError(f"the FHIR server {iss} is not one this app is registered with "
                          "(ERAS_SMART_ALLOWED_ISSUERS)", status=403)
    return iss  # as given: the authorize request's `aud` must be the iss exactly


async def discover(iss: str) -> SmartConfiguration:
    """The endpoints `iss` publishes; LaunchError naming the URL when they cannot be read."""
    url = f"{normalised(iss)}/.well-known/smart-configuration"
    try:
        async with httpx.AsyncClient(timeout=DISCOVERY_TIMEOUT) as http:
            response = await http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise LaunchError(f"the SMART configuration at {url} cannot be read ({type(error).__name__})",
                          status=502) from None
    names = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    missing = [n for n in names if not isinstance(document, dict) or not isinstance(document.get(n), str)]
    if missing:
        raise LaunchError(f"the SMART configuration at {url} names no {', '.join(missing)}", status=502)
    return SmartConfiguration(
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        issuer=str(document.get("issuer") or iss),
    )
