"""The FastAPI application factory: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, event

from api.audit_app import mount_audit
from api.config import Settings
from api.errors import install_error_handlers
from api.intake import IntakeBatcher
from api.routes import health, metrics, notifications
from api.worklist_app import mount_worklist
from api.worklist_settings import WorklistSettings
from engine.model import Pathway
from store.db import make_engine
from store.migrate import upgrade


def _no_op(_inbox_ids: Sequence[int]) -> None:
    return None


def create_app(settings: Settings | None = None, *, worklist: WorklistSettings | None = None,
               pathways: Mapping[str, Pathway] | None = None) -> FastAPI:
    """The API: the engine is made and migrated at start-up, nothing is global at import.

    `app.state.on_event_stored(inbox_ids)` is called after each commit that stored new
    events (sync or async; the default does nothing): the runtime sets it to wake its
    drain loop.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        _set_sqlite_synchronous(engine, settings.sqlite_synchronous)
        if settings.migrate_on_startup:
            await run_in_threadpool(upgrade, engine)
        app.state.engine = engine
        app.state.intake = IntakeBatcher(engine)
        writer = asyncio.create_task(app.state.intake.run(), name="intake-writer")
        try:
            yield
        finally:
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer
            engine.dispose()

    app = FastAPI(title="ERAS pathway engine", lifespan=lifespan)
    app.state.settings = settings
    app.state.on_event_stored = _no_op
    install_error_handlers(app)
    app.include_router(notifications.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if worklist is not None:
        mount_worklist(app, worklist, pathways=pathways)
        mount_audit(app)
    return app


def _set_sqlite_synchronous(engine: Engine, level: str) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA synchronous={level}")
        cursor.close()
