"""Dependencies of the routes, as `Annotated` aliases: settings, engine, intake, database session.

Plain look-ups on `app.state` are `async def`: FastAPI runs a sync dependency in a worker
thread, a hop that costs more than the look-up on the intake's hot path.
"""

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BeforeValidator
from sqlalchemy import Engine
from sqlmodel import Session

from api.intake.batcher import IntakeBatcher
from flows.settings import Settings
from store.db import reading


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_intake(request: Request) -> IntakeBatcher:
    intake: IntakeBatcher = request.app.state.intake
    return intake


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    """A session for reads; routes that write commit explicitly before they answer."""
    with Session(engine) as session:
        yield session


def get_read_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    """A session that only reads: on SQLite it never waits for the write lock."""
    with Session(reading(engine)) as session:
        yield session


def _iso_instant(value: object) -> object:
    """Only an ISO 8601 text is an instant here: pydantic would read `0.5` as seconds since 1970."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("an ISO 8601 date-time, e.g. 2026-01-31T08:00:00Z") from None
    return value


# A query parameter that is an instant, in the OpenAPI as `format: date-time`.
IsoInstant = Annotated[datetime, BeforeValidator(_iso_instant)]

SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
IntakeDep = Annotated[IntakeBatcher, Depends(get_intake)]
