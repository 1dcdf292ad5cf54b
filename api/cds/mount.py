"""Mounts the CDS Hooks service on the API: the EHR's key set, the loaded pathways, the routes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI

from api.auth import JwksCache
from api.cds import routes
from api.cds.auth import EhrVerifier
from api.cds.reads import SharedTransport
from engine.model import Pathway
from flows.settings import CdsSettings, Settings


@dataclass
class CdsState:
    """What the CDS routes read from `app.state.cds`."""

    settings: CdsSettings
    verifier: EhrVerifier
    pathways: Mapping[str, Pathway]
    ehr_base: str
    tz: ZoneInfo
    fhir_transport: SharedTransport


def mount_cds(app: FastAPI, settings: Settings, *, pathways: Mapping[str, Pathway],
              jwks_transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Add `/cds-services` to `app`; hooks are refused (401) until the EHR's issuer and JWKS are set."""
    cds = settings.cds
    keys = None
    if cds.jwks_url:
        keys = JwksCache(url=cds.jwks_url, ttl=settings.worklist.jwks_cache_seconds,
                         min_refetch=settings.worklist.jwks_min_refetch_seconds, transport=jwks_transport)
    app.state.cds = CdsState(settings=cds, verifier=EhrVerifier(cds, keys), pathways=dict(pathways),
                             ehr_base=settings.fhir.base_url, tz=ZoneInfo(settings.timezone),
                             fhir_transport=SharedTransport())
    app.include_router(routes.router)
