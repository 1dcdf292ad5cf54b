"""The FastAPI application factory: `uvicorn --factory api.main:create_app` is the API of `eras serve`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api.admin import access_log, health, metrics, runtime
from api.audit.mount import mount_audit
from api.cds.mount import mount_cds
from api.errors import install_error_handlers, problems
from api.intake import routes as intake
from api.intake.batcher import IntakeBatcher
from api.patients import routes as patients
from api.security import SecurityHeaders
from api.smart.mount import mount_smart
from api.worklist.mount import mount_worklist
from engine.model import Pathway
from flows.config import load_pathways, open_task_client
from flows.relevance import enrolling_resource_types
from flows.settings import Settings
from store.db import database_url, make_engine, set_synchronous
from store.migrate import upgrade

# A nurse waits on the worklist's write-back: one retry, then a clear 502, not the runtime's four.
WORKLIST_FHIR_RETRIES = 1


def _no_op(_inbox_ids: Sequence[int]) -> None:
    return None


def create_app(settings: Settings | None = None, *, pathways: Mapping[str, Pathway] | None = None) -> FastAPI:
    """The whole API (intake, worklist and its page, audit and its page, runtime status, health).

    Settings are read from the environment and `.env` when not given; `pathways` (else the
    configured files) are the runtime's own when `eras serve` runs both in one process. The
    database is migrated and the worklist's FHIR client opened at start-up, nothing is global at
    import. `app.state.on_event_stored(inbox_ids)` is called after each commit that stored new
    events to process (sync or async; the default does nothing): `eras serve` sets it to wake its
    drain. Events that cannot matter (flows.relevance) are stored done at intake.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(database_url(settings.database_url))
        set_synchronous(engine, settings.sqlite_synchronous)
        if settings.migrate_on_startup:
            await run_in_threadpool(upgrade, engine)
        app.state.engine = engine
        app.state.intake = IntakeBatcher(engine, enrolling_types=enrolling_types)
        writer = asyncio.create_task(app.state.intake.run(), name="intake-writer")
        try:
            async with open_task_client(settings, max_retries=WORKLIST_FHIR_RETRIES) as tasks:
                app.state.worklist.tasks = tasks
                yield
        finally:
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer
            await app.state.cds.fhir_transport.close_pool()
            await health.close_probe_client(app)
            engine.dispose()

    docs = settings.api_docs
    # Every route's 422 is the handlers' `{"detail": "..."}` (api/errors.py), FastAPI's list otherwise.
    app = FastAPI(title="ERAS pathway engine", lifespan=lifespan, responses=problems(422),
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.add_middleware(SecurityHeaders, frame_origin=settings.ehr_origin, docs=docs)
    app.state.settings = settings
    app.state.on_event_stored = _no_op
    install_error_handlers(app)
    app.include_router(intake.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(runtime.router)
    app.include_router(access_log.router)
    pathways = pathways if pathways is not None else load_pathways(settings)
    enrolling_types = enrolling_resource_types(pathways.values())  # the intake's relevance test
    mount_worklist(app, settings, pathways=pathways)
    mount_audit(app, settings)
    mount_smart(app, settings)
    mount_cds(app, settings, pathways=pathways)
    app.include_router(patients.router)
    return app


