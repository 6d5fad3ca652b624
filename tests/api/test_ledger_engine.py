"""The ledger batches' own connections: planned by key on PostgreSQL, shared on SQLite."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.api.ledger_batch import KEYED_PLANS, create_ledger_engine
from payflow.config import Settings
from payflow.db import create_engine
from payflow.ledger.repository import _PG_LOCK_ACCOUNTS
from tests.api.conftest import balance, register, settings_for, start_server, topup
from tests.conftest import assert_audit_passes


async def _plan(engine: AsyncEngine, ids: list[uuid.UUID]) -> str:
    async with engine.begin() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        rows = await driver.fetch("EXPLAIN " + _PG_LOCK_ACCOUNTS, ids)
    return "\n".join(row[0] for row in rows)


async def _setting(engine: AsyncEngine, name: str) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(text(f"SHOW {name}"))).scalar_one())


async def test_postgresql_batches_look_rows_up_by_key(pg_url: str, pg_engine: AsyncEngine) -> None:
    ledger = create_ledger_engine(pg_engine, Settings(database_url=pg_url))
    try:
        assert ledger is not pg_engine
        for name in KEYED_PLANS:
            assert await _setting(ledger, name) == "off", name
            # Everything else PayFlow runs keeps the planner's own choices.
            assert await _setting(pg_engine, name) == "on", name
        ids = [uuid.uuid4() for _ in range(12)]
        # However small the accounts table looks to the planner, each id is looked up.
        plan = await _plan(ledger, ids)
        assert "Seq Scan" not in plan, plan
        assert "ledger_accounts_pkey" in plan, plan
    finally:
        await ledger.dispose()


async def test_sqlite_batches_share_the_one_writer(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        assert create_ledger_engine(engine, Settings(database_url=sqlite_url)) is engine
    finally:
        await engine.dispose()


async def test_transfers_through_the_batch_engine_add_up(pg_url: str) -> None:
    """End to end on PostgreSQL with a one-connection batch pool: concurrent transfers
    all commit, balances and the ledger agree."""
    server, stop = await start_server(
        settings_for(pg_url, "postgresql", api_batch_concurrency=1), "postgresql"
    )
    try:
        payer, payee = await register(server.client), await register(server.client)
        await topup(server.client, payer, 10_000)
        body = {"to": payee.handle, "amount": 100, "currency": "INR"}
        responses = await asyncio.gather(
            *(
                server.client.post(
                    "/v1/transfers",
                    json=body,
                    headers={**payer.auth, "Idempotency-Key": uuid.uuid4().hex},
                )
                for _ in range(25)
            )
        )
        assert [r.status_code for r in responses] == [201] * 25
        assert (await balance(server.client, payer))["available"] == 10_000 - 2_500
        assert (await balance(server.client, payee))["available"] == 2_500
        await assert_audit_passes(server.engine)
    finally:
        await stop()
