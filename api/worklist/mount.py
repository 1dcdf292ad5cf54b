"""Mounts the worklist on the API: sign-in (shared with the audit), its routes, the page and its assets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.auth import DevIssuer, JwksCache, TokenVerifier
from api.worklist import dev_auth, page, routes
from engine.model import Element, Pathway
from fhir_adapters.client import FhirClient
from flows.settings import Settings, WorklistSettings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parents[1]  # api/: templates and static shared with the audit page


@dataclass
class WorklistState:
    """What the worklist routes read from `app.state.worklist`."""

    settings: WorklistSettings
    verifier: TokenVerifier
    pathways: Mapping[str, Pathway]
    tz: ZoneInfo
    templates: Jinja2Templates
    dev_issuer: DevIssuer | None = None
    tasks: FhirClient | None = None  # where Tasks live (set at start-up); None: the store is the worklist
    _elements: dict[tuple[str, str], Element] = field(default_factory=dict)

    def element(self, pathway_id: str, element_id: str) -> Element | None:
        """The element as the loaded pathway defines it, or None."""
        if not self._elements:
            self._elements = {(p.id, e.id): e for p in self.pathways.values() for e in p.elements}
        return self._elements.get((pathway_id, element_id))


def mount_worklist(
    app: FastAPI,
    settings: Settings,
    *,
    pathways: Mapping[str, Pathway],
    jwks_transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Add the worklist to `app`; `pathways` give element details (the runtime's own)."""
    dev_issuer = DevIssuer() if settings.worklist.dev_mode else None
    app.state.worklist = WorklistState(
        settings=settings.worklist,
        verifier=_verifier(settings.worklist, dev_issuer, jwks_transport),
        pathways=dict(pathways),
        tz=ZoneInfo(settings.timezone),
        templates=Jinja2Templates(directory=HERE / "templates"),
        dev_issuer=dev_issuer,
    )
    if dev_issuer is not None:
        log.warning("ERAS_WORKLIST_DEV_MODE is on: anyone on this machine can mint tokens at "
                    "/auth/dev-token; never use it with real patients")
        app.include_router(dev_auth.router)
    app.include_router(routes.router)
    app.include_router(page.router)
    app.mount("/static/worklist", StaticFiles(directory=HERE / "static"), name="worklist-static")


def _verifier(
    settings: WorklistSettings, dev_issuer: DevIssuer | None, transport: httpx.AsyncBaseTransport | None
) -> TokenVerifier:
    """Dev mode trusts its own key; otherwise the identity provider's JWKS."""
    if dev_issuer is not None:
        return dev_issuer.verifier()
    if not (settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url):
        raise ValueError(
            "the worklist needs ERAS_WORKLIST_OIDC_ISSUER, _OIDC_AUDIENCE and _OIDC_JWKS_URL "
            "(or ERAS_WORKLIST_DEV_MODE=true for the demo)"
        )
    cache = JwksCache(url=settings.oidc_jwks_url, ttl=settings.jwks_cache_seconds,
                      min_refetch=settings.jwks_min_refetch_seconds, transport=transport)
    return TokenVerifier(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        keys=cache.key,
        roles_claim=settings.roles_claim,
        wards_claim=settings.wards_claim,
        max_lifetime=settings.max_token_lifetime_seconds,
    )
