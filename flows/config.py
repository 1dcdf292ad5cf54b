"""Building a Runtime (and the FHIR clients it writes with) from the settings read at the edge.

Inner layers take a Runtime; only the edges (CLI, API start-up, Prefect entry points) read
`flows.settings.Settings`. Secrets are read from files the settings name, never from the repo.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from engine.loader import DEFAULT_TERMINOLOGY, load_pathway
from engine.model import Pathway
from engine.terminology import Terminology, load_terminology
from fhir_adapters.auth import BearerTokenAuth, FhirAuth, NoAuth, SmartBackendAuth
from fhir_adapters.client import FhirClient
from fhir_adapters.locations import compile_ward_bed_pattern
from fhir_adapters.terminology_server import expand_parents
from flows.runtime import SPARE_CONNECTIONS, Runtime, WriteTarget
from flows.settings import FhirSettings, Settings
from store.db import database_url, make_engine
from store.migrate import upgrade


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} from {path}: {exc.strerror}") from exc


def ehr_auth(fhir: FhirSettings) -> FhirAuth:
    """The EHR credentials the settings name: SMART Backend Services, a bearer token or none."""
    if fhir.auth == "bearer" and fhir.bearer_token_file:
        return BearerTokenAuth(_read_secret(fhir.bearer_token_file, "the FHIR bearer token"))
    if fhir.auth == "smart-backend":
        assert fhir.private_key_file and fhir.client_id and fhir.key_id
        key = _read_secret(fhir.private_key_file, "the SMART private key")
        return SmartBackendAuth(fhir.client_id, key, fhir.key_id, fhir.key_algorithm,
                                token_url=fhir.token_url, fhir_base_url=fhir.base_url,
                                scope=fhir.scope)
    return NoAuth()


def load_pathways(s: Settings, terms: Terminology | None = None) -> dict[str, Pathway]:
    if terms is None and s.terminology:
        terms = load_terminology(s.terminology)
    loaded = [load_pathway(path, terms) for path in s.pathways]
    return {p.id: p for p in loaded}


async def load_pathways_expanded(s: Settings) -> dict[str, Pathway]:
    """The pathways, their terminology's parent codes expanded by the terminology server when
    `ERAS_TERMINOLOGY_SERVER_URL` is set (once, at start-up: the runtime and `eras terminology
    check` bind with the same table)."""
    terms = load_terminology(s.terminology or DEFAULT_TERMINOLOGY)
    if not s.terminology_server_url or terms.subsumption is None:
        return load_pathways(s, terms)
    async with FhirClient(s.terminology_server_url, timeout=s.fhir.timeout) as server:
        table = await expand_parents(server, terms.subsumption.parents())
    return load_pathways(s, terms.with_subsumption(table))


def fhir_connections(s: Settings) -> int:
    """The size of each FHIR client's connection pool: larger than the applies run at once."""
    return s.fhir.concurrent_applies + SPARE_CONNECTIONS


def open_ehr(s: Settings, *, max_retries: int | None = None) -> FhirClient:
    """The EHR client with its auth; used as `async with open_ehr(s) as ehr`."""
    retries = s.fhir.max_retries if max_retries is None else max_retries
    return FhirClient(s.fhir.base_url, auth=ehr_auth(s.fhir), timeout=s.fhir.timeout, max_retries=retries,
                      max_connections=fhir_connections(s))


@asynccontextmanager
async def open_task_client(s: Settings, ehr: FhirClient | None = None, *,
                           max_retries: int | None = None) -> AsyncIterator[FhirClient | None]:
    """The FHIR server Tasks are written to (the EHR, a FHIR store beside it, or None).

    `ehr` is reused when Tasks live in the EHR; otherwise one is opened here and closed on exit.
    """
    retries = s.fhir.max_retries if max_retries is None else max_retries
    if s.write_target is WriteTarget.NONE:
        yield None
    elif s.write_target is WriteTarget.FHIR_STORE:
        assert s.task_store.url
        auth: FhirAuth = NoAuth()
        if s.task_store.bearer_token_file:
            auth = BearerTokenAuth(_read_secret(s.task_store.bearer_token_file, "the task store token"))
        async with FhirClient(s.task_store.url, auth=auth, timeout=s.fhir.timeout,
                              max_retries=retries, max_connections=fhir_connections(s)) as store:
            yield store
    elif ehr is not None:
        yield ehr
    else:
        async with open_ehr(s, max_retries=retries) as opened:
            yield opened


@asynccontextmanager
async def open_results_store(s: Settings) -> AsyncIterator[FhirClient | None]:
    """The FHIR store ORU results are written to and read from (ERAS_MLLP_RESULTS_STORE_URL)."""
    if s.mllp.results_store_url is None:
        yield None
        return
    async with FhirClient(s.mllp.results_store_url, timeout=s.fhir.timeout,
                          max_retries=s.fhir.max_retries, max_connections=fhir_connections(s)) as store:
        yield store


@asynccontextmanager
async def open_runtime(s: Settings, *, migrate: bool = True,
                       pathways: dict[str, Pathway] | None = None) -> AsyncIterator[Runtime]:
    """A Runtime with open FHIR clients and a migrated database; closed on exit."""
    url = database_url(s.database_url)
    if migrate:
        upgrade(url)
    db = make_engine(url, pool_size=fhir_connections(s))  # as many as run at once, the same spare
    try:
        async with open_ehr(s) as ehr, open_task_client(s, ehr) as tasks, \
                open_results_store(s) as results:
            rt = _runtime(s, ehr, tasks, db, pathways or await load_pathways_expanded(s))
            rt.results = results
            try:
                yield rt
            finally:
                await asyncio.to_thread(rt.close_store_threads)  # their transactions end first
    finally:
        db.dispose()


def _runtime(s: Settings, ehr: FhirClient, tasks: FhirClient | None, db: Engine,
             pathways: dict[str, Pathway]) -> Runtime:
    rt = Runtime(pathways=pathways, ehr=ehr, tasks=tasks, target=s.write_target, db=db,
                 tz=ZoneInfo(s.timezone), identifier_system=s.identifier_system, poll=s.poll,
                 report_dir=s.audit.report_dir,
                 ward_bed=compile_ward_bed_pattern(s.fhir.ward_bed_pattern),
                 future_tolerance=timedelta(minutes=s.future_tolerance_minutes),
                 concurrent_applies=s.fhir.concurrent_applies,
                 bundle_max_entries=s.fhir.bundle_max_entries)
    if s.clock_file is not None:
        rt.clock = file_clock(s.clock_file)
    if s.delivery_routes_file is not None:
        from flows.delivery import delivering, load_routing

        rt.deliver = delivering(load_routing(s.delivery_routes_file, ehr=ehr), db, rt.clock)
    return rt


def file_clock(path: Path) -> Callable[[], datetime]:
    """A clock that reads an ISO instant from `path`: lets the demo replay weeks in seconds."""
    def now() -> datetime:
        return datetime.fromisoformat(path.read_text(encoding="utf-8").strip())
    return now
