"""Set-based writes of many rows in few statements, for the API's ledger batches.

On PostgreSQL each column travels as one array, expanded by `unnest`, straight through
the driver: SQLAlchemy's per-row parameter handling costs more than the database's work
for these batches. Several tables' inserts and an update by key go out as one statement
(data-modifying CTEs). On SQLite (one local writer, no round trips) the same writes run
through SQLAlchemy, one statement per table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import driver_connection, is_postgresql

Row = Mapping[str, Any]
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


class RowsTaken(Exception):
    """Raised after a write whose guarded insert found some of its rows there already;
    the caller's transaction must be rolled back (the other writes went out with it)."""


@dataclass(frozen=True, slots=True)
class GuardedInsert:
    """Insert `rows` into `table` unless their `unique` columns are taken; a write with
    a guard fails with `RowsTaken` if any row was not inserted."""

    table: Table
    unique: tuple[str, ...]
    rows: Sequence[Row]


@dataclass(frozen=True, slots=True)
class RowUpdates:
    """Set the other columns of `rows` in the rows of `table` whose `key` matches."""

    table: Table
    key: str
    rows: Sequence[Row]


def _columns(table: Table, rows: Sequence[Row]) -> tuple[str, ...]:
    """The columns the rows give, in the table's order; every row gives the same ones."""
    given = rows[0].keys()
    columns = tuple(c.name for c in table.columns if c.name in given)
    assert len(columns) == len(given), f"unknown columns for {table.name}: {set(given)}"
    assert all(row.keys() == given for row in rows), f"rows for {table.name} differ"
    return columns


@functools.cache
def _array_type(table: Table, column: str) -> str:
    return f"{table.c[column].type.compile(dialect=_PG)}[]"


def _unnest(table: Table, columns: Sequence[str], first: int) -> str:
    arrays = ", ".join(
        f"${first + i}::{_array_type(table, name)}" for i, name in enumerate(columns)
    )
    return f"unnest({arrays})"


@functools.cache
def _processor(table: Table, column: str, dialect: Any) -> Any:
    """SQLAlchemy's conversion of a value for the driver (e.g. JSON to text), or None."""
    return table.c[column].type.dialect_impl(dialect).bind_processor(dialect)


def _arrays(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[Row]
) -> list[list[Any]]:
    arrays = []
    for name in columns:
        values = [row[name] for row in rows]
        process = _processor(table, name, conn.dialect)
        if process is not None:
            values = [None if v is None else process(v) for v in values]
        arrays.append(values)
    return arrays


@functools.cache
def _write_parts(
    inserts: tuple[tuple[Table, tuple[str, ...]], ...],
    updates: tuple[tuple[Table, str, tuple[str, ...]], ...],
    first: int,
) -> tuple[str, ...]:
    parts = []
    for i, (table, columns) in enumerate(inserts):
        names = ", ".join(f'"{c}"' for c in columns)
        source = _unnest(table, columns, first)
        parts.append(f'bulk_i{i} AS (INSERT INTO "{table.name}" ({names}) SELECT * FROM {source})')
        first += len(columns)
    for i, (table, key, columns) in enumerate(updates):
        names = ", ".join(f'"{c}"' for c in columns)
        sets = ", ".join(f'"{c}" = u."{c}"' for c in columns if c != key)
        source = _unnest(table, columns, first)
        parts.append(
            f'bulk_u{i} AS (UPDATE "{table.name}" AS t SET {sets} FROM {source} AS u({names}) '
            f'WHERE t."{key}" = u."{key}")'
        )
        first += len(columns)
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class BulkWrite:
    """Rows to insert into several tables and rows to update by key, written together."""

    inserts: Mapping[Table, Sequence[Row]]
    updates: Sequence[RowUpdates] = ()
    guard: GuardedInsert | None = None

    def _shapes(
        self,
    ) -> tuple[
        list[tuple[Table, Sequence[Row]]],
        list[RowUpdates],
        tuple[tuple[Table, tuple[str, ...]], ...],
        tuple[tuple[Table, str, tuple[str, ...]], ...],
    ]:
        """The non-empty inserts and updates, and their columns (checked)."""
        inserting = [(t, rows) for t, rows in self.inserts.items() if rows]
        updating = [u for u in self.updates if u.rows]
        insert_shapes = tuple((t, _columns(t, rows)) for t, rows in inserting)
        update_shapes = tuple((u.table, u.key, _columns(u.table, u.rows)) for u in updating)
        for (_, key, columns), u in zip(update_shapes, updating, strict=True):
            assert key in columns, f"updates of {u.table.name} must give {key}"
        return inserting, updating, insert_shapes, update_shapes

    def ctes(self, conn: AsyncConnection, first: int) -> tuple[tuple[str, ...], list[Any]]:
        """PostgreSQL: the writes as data-modifying CTEs (`name AS (...)`) whose
        parameters start at `$first`, and their arguments. Checks the rows' columns."""
        inserting, updating, insert_shapes, update_shapes = self._shapes()
        arguments: list[list[Any]] = []
        for (table, columns), (_, rows) in zip(insert_shapes, inserting, strict=True):
            arguments += _arrays(conn, table, columns, rows)
        for (_, _, columns), u in zip(update_shapes, updating, strict=True):
            arguments += _arrays(conn, u.table, columns, u.rows)
        parts = _write_parts(insert_shapes, update_shapes, first)
        guard = self.guard
        if guard is not None and guard.rows:
            columns = _columns(guard.table, guard.rows)
            sql = _insert_new_sql(guard.table, columns, guard.unique, None, first + len(arguments))
            parts += (f"bulk_g AS ({sql})",)
            arguments += _arrays(conn, guard.table, columns, guard.rows)
        return parts, arguments

    def result_sql(self) -> str:
        """PostgreSQL: the query that ends the statement `ctes` begins; its value goes to
        `check`."""
        guard = self.guard
        return "SELECT count(*) FROM bulk_g" if guard is not None and guard.rows else "SELECT 1"

    def check(self, value: Any) -> None:
        """Raise `RowsTaken` if the guarded insert (`value` rows of it) fell short."""
        guard = self.guard
        if guard is not None and guard.rows and value != len(guard.rows):
            raise RowsTaken(f"{len(guard.rows) - value} {guard.table.name} row(s) taken already")

    async def run(self, conn: AsyncConnection) -> None:
        """Write it in the caller's transaction (one statement on PostgreSQL)."""
        if is_postgresql(conn):
            parts, arguments = self.ctes(conn, 1)
            if parts:
                driver = await driver_connection(conn)
                sql = "WITH " + ",\n".join(parts) + "\n" + self.result_sql()
                self.check(await driver.fetchval(sql, *arguments))
            return
        assert self.guard is None, "guarded inserts are for PostgreSQL"
        inserting, updating, _, update_shapes = self._shapes()
        for table, rows in inserting:
            await conn.execute(insert(table), list(rows))
        for (_, key, columns), u in zip(update_shapes, updating, strict=True):
            statement = (
                update(u.table)
                .where(u.table.c[key] == bindparam(f"_{key}"))
                .values({c: bindparam(f"_{c}") for c in columns if c != key})
            )
            await conn.execute(
                statement, [{f"_{name}": value for name, value in row.items()} for row in u.rows]
            )


async def write_rows(
    conn: AsyncConnection,
    inserts: Mapping[Table, Sequence[Row]],
    updates: Sequence[RowUpdates] = (),
) -> None:
    """Insert `inserts` and apply `updates` in the caller's transaction (one statement
    on PostgreSQL). Tables or updates without rows are left out."""
    await BulkWrite(inserts, updates).run(conn)


@functools.cache
def _insert_new_sql(
    table: Table, columns: tuple[str, ...], unique: tuple[str, ...], key: str | None, first: int = 1
) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    conflict = ", ".join(f'"{c}"' for c in unique)
    returning = f'"{key}"' if key is not None else "1"
    return (
        f'INSERT INTO "{table.name}" ({names}) SELECT * FROM {_unnest(table, columns, first)} '
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}"
    )


async def insert_new(
    conn: AsyncConnection, table: Table, rows: Sequence[Row], *, unique: Sequence[str], key: str
) -> set[Any]:
    """Insert the rows whose `unique` columns are not taken yet, in the given order; the
    `key` values of those inserted."""
    if not rows:
        return set()
    columns = _columns(table, rows)
    if is_postgresql(conn):
        driver = await driver_connection(conn)
        sql = _insert_new_sql(table, columns, tuple(unique), key)
        arrays = _arrays(conn, table, columns, rows)
        return {record[0] for record in await driver.fetch(sql, *arrays)}
    statement = (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=list(unique))
        .returning(table.c[key])
    )
    return {row[0] for row in await conn.execute(statement, list(rows))}
