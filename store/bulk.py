"""Statements over many rows without SQLAlchemy's per-row work: the apply's and recompute's writes.

Each value goes through its column type's own bind or result processor, as SQLAlchemy would
convert it; the SQL is compiled once per statement shape and dialect, and runs on the driver in
the session's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Dialect, Select, Table
from sqlmodel import Session

_Processor = Callable[[Any], Any] | None
# Statements and processors made once per dialect (each engine has its own) and statement shape.
_per_dialect = lru_cache(maxsize=256)


def insert_many(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """`session.execute(insert(table), rows)` (the same names in each row) without its per-row
    statement work: the rows go in with one driver `executemany` (SQLite) or one COPY
    (PostgreSQL), several times cheaper."""
    connection = session.connection()
    dialect = connection.dialect
    names = tuple(rows[0])
    processors = _bind_processors(dialect, table, names)
    data = [tuple(value if p is None else p(value) for p, value in zip(processors, (row[n] for n in names),
                                                                        strict=True)) for row in rows]
    if dialect.name == "postgresql":
        copy = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
        with _driver(session).cursor() as cursor, cursor.copy(copy) as stream:
            for values in data:
                stream.write_row(values)
    else:
        placeholders = ", ".join("?" for _ in names)
        connection.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({placeholders})",
                                   data)


def update_many(session: Session, table: Table, keys: Mapping[str, str],
                rows: Sequence[Mapping[str, Any]]) -> int:
    """Update each row (the same names in each) where the columns `keys` names hold the values
    of those names; the other names are the columns set. Returns how many rows matched. Several
    rows on PostgreSQL: one statement over one array per column (`unnest`), so the server plans
    and runs one UPDATE, not one per row; otherwise one UPDATE with a driver `executemany`."""
    connection = session.connection()
    dialect = connection.dialect
    names = tuple(rows[0])
    if dialect.name == "postgresql" and len(rows) > 1:
        sql, processors = _unnest_update(dialect, table, tuple(keys.items()), names)
        arrays = [[row[name] if process is None else process(row[name]) for row in rows]
                  for name, process in zip(names, processors, strict=True)]
        return int(connection.exec_driver_sql(sql, tuple(arrays)).rowcount)
    sql, order = _keyed_update(dialect, table, tuple(keys.items()), names)
    processors = _bind_processors(dialect, table, tuple(keys.get(name, name) for name in order))
    data = [tuple(row[name] if process is None else process(row[name])
                  for name, process in zip(order, processors, strict=True)) for row in rows]
    return int(connection.exec_driver_sql(sql, data if len(data) > 1 else data[0]).rowcount)


def read_rows(session: Session, statement: Select[Any], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`read_values`' rows as dicts by column name."""
    names = _compiled_select(session.get_bind().dialect, statement)[2]
    return [dict(zip(names, row, strict=True)) for row in read_values(session, statement, params)]


def read_values(session: Session, statement: Select[Any], params: Mapping[str, Any]) -> list[list[Any]]:
    """The rows of `statement` (each a list of its values), converted as SQLAlchemy's result
    would; `params`: the values of its bind parameters, plain values the driver takes as they
    are (strings, numbers). Several times cheaper than a `Result`'s rows, for the reads of tens
    of rows that every apply makes."""
    connection = session.connection()
    sql, order, _, processors = _compiled_select(connection.dialect, statement)
    cursor = _driver(session).cursor()
    try:
        cursor.execute(sql, params if order is None else tuple(params[name] for name in order))
        rows = [list(values) for values in cursor.fetchall()]
    finally:
        cursor.close()
    converted = [(i, p) for i, p in enumerate(processors) if p is not None]
    if converted:
        for row in rows:
            for i, process in converted:
                row[i] = process(row[i])
    return rows


def _driver(session: Session) -> Any:
    """The driver's connection, in this session's transaction."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver


@_per_dialect
def _bind_processors(dialect: Dialect, table: Table, names: tuple[str, ...]) -> list[_Processor]:
    return [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]


@_per_dialect
def _keyed_update(dialect: Dialect, table: Table, keys: tuple[tuple[str, str], ...],
                  names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The UPDATE of one row by positional parameters, and the names in their order."""
    by_key = dict(keys)
    q = dialect.identifier_preparer.quote
    mark = "%s" if dialect.paramstyle in ("format", "pyformat") else "?"
    sets = [name for name in names if name not in by_key]
    sql = (f"UPDATE {q(table.name)} SET {', '.join(f'{q(name)} = {mark}' for name in sets)} "
           f"WHERE {' AND '.join(f'{q(column)} = {mark}' for _, column in keys)}")
    return sql, (*sets, *by_key)


@_per_dialect
def _unnest_update(dialect: Dialect, table: Table, keys: tuple[tuple[str, str], ...],
                   names: tuple[str, ...]) -> tuple[str, list[_Processor]]:
    """The UPDATE ... FROM unnest of one array per name, and each name's bind processor."""
    by_key = dict(keys)
    types = [table.c[by_key.get(name, name)].type.dialect_impl(dialect) for name in names]
    q = dialect.identifier_preparer.quote
    unnest = ", ".join(f"%b::{t.compile(dialect=dialect)}[]" for t in types)  # binary: no text escaping
    sets = ", ".join(f"{q(name)} = v.{q(name)}" for name in names if name not in by_key)
    match = " AND ".join(f"t.{q(column)} = v.{q(key)}" for key, column in keys)
    sql = (f"UPDATE {q(table.name)} AS t SET {sets} FROM unnest({unnest}) "
           f"AS v({', '.join(map(q, names))}) WHERE {match}")
    return sql, [t.bind_processor(dialect) for t in types]


@_per_dialect
def _compiled_select(dialect: Dialect, statement: Select[Any]
                     ) -> tuple[str, tuple[str, ...] | None, list[str], list[_Processor]]:
    """The select's SQL, its parameters' order (None: by name), column names and processors."""
    compiled = statement.compile(dialect=dialect)
    order = None if dialect.paramstyle in ("pyformat", "named") else tuple(compiled.positiontup or ())
    columns = list(statement.selected_columns)
    processors: list[_Processor] = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                                    for c in columns]
    return compiled.string, order, list(statement.selected_columns.keys()), processors
