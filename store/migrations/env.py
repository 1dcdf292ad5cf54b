"""Alembic environment: migrates the connection or URL that `store.migrate` hands over."""

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from store.db import make_engine
from store.types import UTCDateTime

config = context.config
target_metadata = SQLModel.metadata

if config.config_file_name is not None and not config.attributes.get("connection"):
    fileConfig(config.config_file_name)


def _url() -> str:
    """`-x url=...` on the alembic command line, else sqlalchemy.url from alembic.ini."""
    return context.get_x_argument(as_dictionary=True).get("url") or (
        config.get_main_option("sqlalchemy.url") or ""
    )


def _render_item(type_: str, obj: Any, _autogen_context: Any) -> str | Literal[False]:
    """Autogenerate plain SQLAlchemy types, so a migration never changes with the models."""
    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, AutoString):
        return f"sa.String({obj.length or ''})"
    return False


def _configure(**kwargs: Any) -> None:
    # Batch mode lets the same migration ALTER tables on SQLite, which lacks most ALTERs.
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,
        render_item=_render_item,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
