"""Probes for load balancers and orchestrators: alive (/healthz) and ready (/readyz).

Liveness depends on nothing outside the process, so an outage of the database or the EHR
never gets healthy API processes restarted; readiness says what is wrong (no authentication,
no patient data).
"""

import logging
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from store.db import reading

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])
EHR_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves requests."""
    return {"status": "ok"}


READINESS = {"type": "object", "required": ["status", "database", "ehr"],
             "properties": {k: {"type": "string"} for k in ("status", "database", "ehr")}}


@router.get("/readyz", responses={
    200: {"description": "Ready", "content": {"application/json": {"schema": READINESS}}},
    503: {"description": "The database or the EHR does not answer",
          "content": {"application/json": {"schema": READINESS}}}})
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers and the EHR's FHIR endpoint answers; 503 naming the
    failing dependency otherwise."""
    checks = {"database": await run_in_threadpool(_database, request.app.state.engine),
              "ehr": await _ehr(probe_client(request.app), _ehr_base_url(request))}
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", **checks},
                        status_code=200 if ready else 503)


def _database(engine: Engine) -> str:
    try:
        with reading(engine).connect() as connection:  # SQLite: never waits for a writer
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        log.warning("readiness: database unreachable (%s)", type(error).__name__)
        return f"unreachable ({type(error).__name__})"
    return "ok"


def _ehr_base_url(request: Request) -> str:
    """The runtime's EHR in `eras serve`, else the configured one."""
    runtime: Any = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        return str(runtime.ehr.base_url)
    return str(request.app.state.settings.fhir.base_url)


def probe_client(app: Any) -> httpx.AsyncClient:
    """The app's one client for the EHR probe, made at the first probe and closed with the app
    (api.main): a new client each probe built its TLS context again, ~25 ms of CPU every
    probe (every 10 s per replica in deploy/k8s)."""
    http: httpx.AsyncClient | None = getattr(app.state, "probe_http", None)
    if http is None or http.is_closed:
        http = app.state.probe_http = httpx.AsyncClient(timeout=EHR_TIMEOUT)
    return http


async def close_probe_client(app: Any) -> None:
    http: httpx.AsyncClient | None = getattr(app.state, "probe_http", None)
    if http is not None:
        await http.aclose()


async def _ehr(http: httpx.AsyncClient, base_url: str) -> str:
    """Reachable when the server answers below 500: a 401 still proves it is up."""
    try:
        response = await http.get(base_url.rstrip("/") + "/metadata")
    except httpx.HTTPError as error:
        log.warning("readiness: EHR unreachable (%s)", type(error).__name__)
        return f"unreachable ({type(error).__name__})"
    if response.status_code >= 500:
        return f"unavailable (HTTP {response.status_code})"
    return "ok"
