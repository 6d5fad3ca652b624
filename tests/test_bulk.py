"""Set-based writes (`payflow.bulk`) on both databases: what goes in is what is read back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.bulk import BulkWrite, GuardedInsert, RowsTaken, RowUpdates, insert_new, write_rows


async def _own_tables(engine: AsyncEngine) -> AsyncIterator[tuple[Table, Table]]:
    """Two tables of this test's own (unique names), dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    metadata = MetaData()
    things = Table(
        f"bulk_things_{suffix}",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("owner", String(16), nullable=False),
        Column("name", String(16), nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("details", JSON, nullable=True),
        Column("body", Text, nullable=True),
        UniqueConstraint("owner", "name"),
    )
    notes = Table(
        f"bulk_notes_{suffix}",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("text", Text, nullable=False),
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield things, notes
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)


@pytest.fixture
async def tables(engine: AsyncEngine) -> AsyncIterator[tuple[Table, Table]]:
    async for made in _own_tables(engine):
        yield made


@pytest.fixture
async def tables_pg(pg_engine: AsyncEngine) -> AsyncIterator[tuple[Table, Table]]:
    async for made in _own_tables(pg_engine):
        yield made


def _thing(owner: str, name: str, amount: int, **extra: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "owner": owner, "name": name, "amount": amount, **extra}


async def _rows(engine: AsyncEngine, table: Table) -> dict[uuid.UUID, dict[str, Any]]:
    async with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in await conn.execute(select(table))}


class TestWriteRows:
    async def test_inserts_into_several_tables_and_updates_in_one_call(
        self, engine: AsyncEngine, tables: tuple[Table, Table]
    ) -> None:
        things, notes = tables
        first = _thing("a", "one", 1, details={"k": [1, "x"]}, body=None)
        second = _thing("a", "two", 2**63 - 1, details=None, body="ü\n")
        note = {"id": uuid.uuid4(), "text": "hello"}
        async with engine.begin() as conn:
            await write_rows(conn, {things: [first, second], notes: [note]})
        stored = await _rows(engine, things)
        assert stored == {first["id"]: first, second["id"]: second}
        assert await _rows(engine, notes) == {note["id"]: note}

        update = RowUpdates(things, "id", [{"id": first["id"], "amount": 5, "body": "done"}])
        extra = {"id": uuid.uuid4(), "text": "again"}
        async with engine.begin() as conn:
            await write_rows(conn, {notes: [extra]}, [update])
        stored = await _rows(engine, things)
        assert stored[first["id"]] == {**first, "amount": 5, "body": "done"}
        assert stored[second["id"]] == second
        assert set(await _rows(engine, notes)) == {note["id"], extra["id"]}

    async def test_nothing_to_write_is_no_statement(
        self, engine: AsyncEngine, tables: tuple[Table, Table]
    ) -> None:
        things, notes = tables
        async with engine.begin() as conn:
            await write_rows(conn, {things: [], notes: []}, [RowUpdates(things, "id", [])])
        assert await _rows(engine, things) == {}

    async def test_a_refused_row_writes_nothing_of_the_call(
        self, engine: AsyncEngine, tables: tuple[Table, Table]
    ) -> None:
        things, notes = tables
        clash = _thing("a", "same", 1)
        # SQLAlchemy's error on SQLite; the driver's own on PostgreSQL (no SQLAlchemy).
        with pytest.raises((IntegrityError, DBAPIError, asyncpg.UniqueViolationError)):
            async with engine.begin() as conn:
                await write_rows(
                    conn,
                    {
                        notes: [{"id": uuid.uuid4(), "text": "kept?"}],
                        things: [clash, {**_thing("a", "same", 2)}],
                    },
                )
        assert await _rows(engine, things) == {}
        assert await _rows(engine, notes) == {}

    async def test_rows_must_give_the_same_known_columns(
        self, engine: AsyncEngine, tables: tuple[Table, Table]
    ) -> None:
        things, _ = tables
        async with engine.begin() as conn:
            with pytest.raises(AssertionError, match="differ"):
                await write_rows(
                    conn, {things: [_thing("a", "x", 1), _thing("a", "y", 1, body="b")]}
                )
            with pytest.raises(AssertionError, match="unknown columns"):
                await write_rows(conn, {things: [_thing("a", "x", 1, colour="red")]})
            with pytest.raises(AssertionError, match="must give id"):
                await write_rows(conn, {}, [RowUpdates(things, "id", [{"amount": 1}])])


class TestInsertNew:
    async def test_inserts_only_rows_whose_unique_columns_are_free(
        self, engine: AsyncEngine, tables: tuple[Table, Table]
    ) -> None:
        things, _ = tables
        taken = _thing("a", "taken", 1, details=None)
        async with engine.begin() as conn:
            assert await insert_new(conn, things, [taken], unique=("owner", "name"), key="id") == {
                taken["id"]
            }
        fresh = _thing("a", "fresh", 2, details={"n": 1})
        again = _thing("a", "taken", 3, details=None)
        other_owner = _thing("b", "taken", 4, details=None)
        async with engine.begin() as conn:
            inserted = await insert_new(
                conn, things, [again, fresh, other_owner], unique=("owner", "name"), key="id"
            )
        assert inserted == {fresh["id"], other_owner["id"]}
        stored = await _rows(engine, things)
        assert set(stored) == {taken["id"], fresh["id"], other_owner["id"]}
        assert stored[taken["id"]]["amount"] == 1
        assert stored[fresh["id"]]["details"] == {"n": 1}

    async def test_no_rows_no_statement(
        self, engine: AsyncEngine, tables: tuple[Table, Table]
    ) -> None:
        things, _ = tables
        async with engine.begin() as conn:
            assert await insert_new(conn, things, [], unique=("owner", "name"), key="id") == set()


class TestGuardedInsert:
    """PostgreSQL: rows inserted with the other writes unless their unique columns are
    taken; a write whose guard fell short raises, and its transaction writes nothing."""

    async def test_free_rows_go_in_with_the_other_writes(
        self, pg_engine: AsyncEngine, tables_pg: tuple[Table, Table]
    ) -> None:
        things, notes = tables_pg
        old = _thing("a", "old", 1)
        async with pg_engine.begin() as conn:
            await write_rows(conn, {things: [old]})
        note = {"id": uuid.uuid4(), "text": "with the guard"}
        guarded = [_thing("a", "new", 2, body="b"), _thing("b", "old", 3, body="c")]
        write = BulkWrite(
            {notes: [note]},
            [RowUpdates(things, "id", [{"id": old["id"], "amount": 9}])],
            GuardedInsert(things, ("owner", "name"), guarded),
        )
        async with pg_engine.begin() as conn:
            await write.run(conn)
        stored = await _rows(pg_engine, things)
        assert stored[old["id"]]["amount"] == 9
        assert {stored[g["id"]]["body"] for g in guarded} == {"b", "c"}
        assert await _rows(pg_engine, notes) == {note["id"]: note}

    async def test_a_taken_row_raises_and_nothing_is_written(
        self, pg_engine: AsyncEngine, tables_pg: tuple[Table, Table]
    ) -> None:
        things, notes = tables_pg
        taken = _thing("a", "taken", 1)
        async with pg_engine.begin() as conn:
            await write_rows(conn, {things: [taken]})
        write = BulkWrite(
            {notes: [{"id": uuid.uuid4(), "text": "rolled back"}]},
            (),
            GuardedInsert(
                things, ("owner", "name"), [_thing("a", "free", 2), _thing("a", "taken", 3)]
            ),
        )
        with pytest.raises(RowsTaken, match=r"^1 bulk_things_\w+ row"):
            async with pg_engine.begin() as conn:
                await write.run(conn)
        assert await _rows(pg_engine, things) == {
            taken["id"]: {**taken, "details": None, "body": None}
        }
        assert await _rows(pg_engine, notes) == {}

    async def test_sqlite_refuses_a_guard(self, sqlite_url: str) -> None:
        from payflow.db import create_engine

        engine = create_engine(sqlite_url)
        metadata = MetaData()
        table = Table(
            f"bulk_guard_{uuid.uuid4().hex[:8]}", metadata, Column("id", Uuid, primary_key=True)
        )
        write = BulkWrite({}, (), GuardedInsert(table, ("id",), [{"id": uuid.uuid4()}]))
        try:
            with pytest.raises(AssertionError, match="PostgreSQL"):
                async with engine.begin() as conn:
                    await write.run(conn)
        finally:
            await engine.dispose()
