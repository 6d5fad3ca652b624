"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.migrations_metadata import all_metadata


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, all_metadata()))


async def test_the_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []


async def test_idempotency_keys_are_on_full_pages(pg_engine: AsyncEngine) -> None:
    """Migration 0011 undid 0010's fillfactor 30: keys are inserted complete."""
    async with pg_engine.connect() as conn:
        options = (
            await conn.execute(
                text("SELECT reloptions FROM pg_class WHERE relname = 'api_idempotency_keys'")
            )
        ).scalar_one()
    assert options is None


async def test_only_resolutions_are_indexed_by_pending_id(pg_engine: AsyncEngine) -> None:
    """Migration 0011: the unique index of pending ids is partial, and the lookup of a
    pending transfer's resolution still uses it (planned by key, as ledger batches are)."""
    async with pg_engine.connect() as conn:
        definition = (
            await conn.execute(
                text(
                    "SELECT indexdef FROM pg_indexes "
                    "WHERE indexname = 'ledger_transfers_pending_id_key'"
                )
            )
        ).scalar_one()
        assert definition.startswith("CREATE UNIQUE INDEX")
        assert definition.endswith("WHERE (pending_id IS NOT NULL)")
        await conn.execute(text("SET enable_seqscan = off"))
        plan = (
            await conn.execute(
                text(
                    "EXPLAIN SELECT flags FROM ledger_transfers "
                    "WHERE pending_id = '00000000-0000-0000-0000-000000000001'"
                )
            )
        ).scalars()
        assert any("ledger_transfers_pending_id_key" in line for line in plan)
        await conn.rollback()
