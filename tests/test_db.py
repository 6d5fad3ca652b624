"""Engines, transactions and retries (`payflow.db`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.db import (
    Conflict,
    HeldConnections,
    driver_connection,
    is_retryable,
    lock_name,
    run_in_transaction,
)
from payflow.wallets import models as wallet_models
from payflow.wallets.domain import SYSTEM_ACCOUNT_CODES
from payflow.wallets.service import ensure_system_accounts, list_system_accounts


class TestDriverConnection:
    async def test_driver_statements_roll_back_with_the_transaction(
        self, pg_engine: AsyncEngine
    ) -> None:
        """The ledger's driver-level statements must be inside the caller's transaction."""
        async with pg_engine.connect() as conn:
            await conn.execute(text("CREATE TEMP TABLE probe (v int)"))
            await conn.commit()
            driver = await driver_connection(conn)
            assert driver.is_in_transaction()
            await driver.execute("INSERT INTO probe VALUES (1)")
            await conn.rollback()
            assert (await conn.execute(text("SELECT count(*) FROM probe"))).scalar_one() == 0
            driver = await driver_connection(conn)
            await driver.execute("INSERT INTO probe VALUES (2)")
            await conn.commit()
            assert (await conn.execute(text("SELECT count(*) FROM probe"))).scalar_one() == 1

    async def test_refuses_sqlite(self, sqlite_url: str) -> None:
        from payflow.db import create_engine

        engine = create_engine(sqlite_url)
        try:
            async with engine.connect() as conn:
                with pytest.raises(AssertionError):
                    await driver_connection(conn)
        finally:
            await engine.dispose()


class TestRunInTransaction:
    async def test_retries_conflicts_then_succeeds(self, engine: AsyncEngine) -> None:
        attempts = []

        async def work(conn: AsyncConnection) -> str:
            attempts.append(1)
            if len(attempts) < 3:
                raise Conflict("try again")
            return "done"

        assert await run_in_transaction(engine, work, retries_max=5) == "done"
        assert len(attempts) == 3

    async def test_gives_up_after_the_bound(self, engine: AsyncEngine) -> None:
        attempts = []

        async def work(conn: AsyncConnection) -> None:
            attempts.append(1)
            raise Conflict("always")

        with pytest.raises(Conflict):
            await run_in_transaction(engine, work, retries_max=2)
        assert len(attempts) == 3

    async def test_other_errors_are_not_retried(self, engine: AsyncEngine) -> None:
        attempts = []

        async def work(conn: AsyncConnection) -> None:
            attempts.append(1)
            raise ValueError("a bug")

        with pytest.raises(ValueError, match="a bug"):
            await run_in_transaction(engine, work, retries_max=5)
        assert len(attempts) == 1

    async def test_work_is_rolled_back_on_error(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE IF NOT EXISTS rollback_probe (v int)"))
            await conn.execute(text("DELETE FROM rollback_probe"))

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(text("INSERT INTO rollback_probe VALUES (1)"))
            raise ValueError("after the insert")

        with pytest.raises(ValueError, match="after the insert"):
            await run_in_transaction(engine, work)
        async with engine.begin() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM rollback_probe"))).scalar()
            await conn.execute(text("DROP TABLE rollback_probe"))
        assert count == 0


def _checked_out(engine: AsyncEngine) -> int:
    return int(engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]


async def _backend_pid(conn: AsyncConnection) -> object:
    return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


class TestHeldConnections:
    async def test_back_to_back_transactions_share_one_connection(
        self, engine: AsyncEngine
    ) -> None:
        held = HeldConnections(engine)
        before = _checked_out(engine)
        try:
            seen = [await held.run(lambda conn: _connection_of(conn)) for _ in range(3)]
            assert seen[0] is seen[1] is seen[2]
            assert held.held == 1
            assert _checked_out(engine) == before + 1
        finally:
            await held.close()
        assert held.held == 0
        assert _checked_out(engine) == before

    async def test_each_transaction_commits(self, pg_engine: AsyncEngine) -> None:
        held = HeldConnections(pg_engine)
        async with pg_engine.begin() as conn:
            await conn.execute(text("CREATE TABLE IF NOT EXISTS held_probe (v int)"))
            await conn.execute(text("DELETE FROM held_probe"))

        async def insert(conn: AsyncConnection) -> object:
            await conn.execute(text("INSERT INTO held_probe VALUES (1)"))
            return await _backend_pid(conn)

        try:
            pids = {await held.run(insert), await held.run(insert)}
            # Seen from another connection while the held one stays out: both committed.
            async with pg_engine.begin() as conn:
                count = (await conn.execute(text("SELECT count(*) FROM held_probe"))).scalar()
                await conn.execute(text("DROP TABLE held_probe"))
        finally:
            await held.close()
        assert count == 2
        assert len(pids) == 1

    async def test_conflicts_are_retried_on_the_same_connection(self, engine: AsyncEngine) -> None:
        held = HeldConnections(engine)
        attempts: list[object] = []

        async def work(conn: AsyncConnection) -> str:
            attempts.append(await _connection_of(conn))
            if len(attempts) < 3:
                raise Conflict("try again")
            return "done"

        try:
            assert await held.run(work, retries_max=5) == "done"
        finally:
            await held.close()
        assert len(attempts) == 3
        assert attempts[0] is attempts[1] is attempts[2]

    async def test_a_failed_transaction_gives_its_connection_back(
        self, engine: AsyncEngine
    ) -> None:
        held = HeldConnections(engine)
        before = _checked_out(engine)

        async def fail(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1"))
            raise ValueError("inside the transaction")

        with pytest.raises(ValueError, match="inside the transaction"):
            await held.run(fail)
        assert held.held == 0
        assert _checked_out(engine) == before
        try:
            assert await held.run(lambda conn: _one(conn)) == 1
        finally:
            await held.close()

    async def test_a_cancelled_transaction_gives_its_connection_back(
        self, pg_engine: AsyncEngine
    ) -> None:
        held = HeldConnections(pg_engine)
        before = _checked_out(pg_engine)
        started = asyncio.Event()

        async def slow(conn: AsyncConnection) -> None:
            started.set()
            await conn.execute(text("SELECT pg_sleep(5)"))

        await _cancel_once_started(held.run(slow), started)
        assert held.held == 0
        assert _checked_out(pg_engine) == before
        try:
            assert await held.run(lambda conn: _one(conn)) == 1
        finally:
            await held.close()


class TestBeginAhead:
    """`HeldConnections(begin_ahead=…)` on PostgreSQL: transactions on the driver, the
    next one begun with the commit; never an effect before its commit, never a pooled
    connection left in a transaction."""

    @pytest.fixture
    async def probe(self, pg_engine: AsyncEngine) -> AsyncIterator[str]:
        table = f"ahead_{uuid.uuid4().hex[:8]}"
        async with pg_engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (v int)"))
        yield table
        async with pg_engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))

    @staticmethod
    async def _count(engine: AsyncEngine, table: str) -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())

    @staticmethod
    async def _state(engine: AsyncEngine, pid: object) -> str:
        async with engine.connect() as conn:
            return str(
                (
                    await conn.execute(
                        text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                    )
                ).scalar_one()
            )

    async def test_each_transaction_commits_before_run_returns(
        self, pg_engine: AsyncEngine, probe: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("payflow.db.BEGUN_IDLE_S", 0.2)
        held = HeldConnections(pg_engine, begin_ahead=lambda: True)

        async def insert(conn: AsyncConnection) -> object:
            driver = await driver_connection(conn)
            await driver.execute(f"INSERT INTO {probe} VALUES (1)")
            await conn.execute(text(f"INSERT INTO {probe} VALUES (2)"))
            return await _backend_pid(conn)

        try:
            pid = await held.run(insert)
            assert await self._count(pg_engine, probe) == 2
            # The next transaction is begun already, empty.
            assert await self._state(pg_engine, pid) == "idle in transaction"
            assert await held.run(insert) == pid
            assert await self._count(pg_engine, probe) == 4
            # Left alone, the empty transaction is rolled back.
            await asyncio.sleep(0.5)
            assert await self._state(pg_engine, pid) == "idle"
            assert held.held == 1
            assert await held.run(insert) == pid
            assert await self._count(pg_engine, probe) == 6
        finally:
            await held.close()
        assert held.held == 0

    async def test_without_load_nothing_is_begun_ahead(
        self, pg_engine: AsyncEngine, probe: str
    ) -> None:
        held = HeldConnections(pg_engine, begin_ahead=lambda: False)
        try:
            pid = await held.run(_backend_pid)
            assert await self._state(pg_engine, pid) == "idle"
        finally:
            await held.close()

    async def test_a_failed_transaction_is_rolled_back_and_the_connection_kept(
        self, pg_engine: AsyncEngine, probe: str
    ) -> None:
        held = HeldConnections(pg_engine, begin_ahead=lambda: True)

        async def fail(conn: AsyncConnection) -> None:
            await conn.execute(text(f"INSERT INTO {probe} VALUES (1)"))
            raise LookupError("after the insert")

        async def fail_in_the_database(conn: AsyncConnection) -> None:
            await conn.execute(text(f"INSERT INTO {probe} VALUES (1)"))
            await conn.execute(text("SELECT 1 / 0"))

        try:
            await held.run(_backend_pid)  # begins the next one ahead
            with pytest.raises(LookupError):
                await held.run(fail, keep_on=(LookupError,))
            assert held.held == 1
            with pytest.raises(DBAPIError):
                await held.run(fail_in_the_database)
            assert held.held == 0
            assert await self._count(pg_engine, probe) == 0
            pid = await held.run(_backend_pid)
            assert await self._state(pg_engine, pid) == "idle in transaction"
        finally:
            await held.close()
        assert await self._count(pg_engine, probe) == 0

    async def test_conflicts_are_retried_in_a_new_transaction(
        self, pg_engine: AsyncEngine, probe: str
    ) -> None:
        held = HeldConnections(pg_engine, begin_ahead=lambda: True)
        attempts = 0

        async def work(conn: AsyncConnection) -> None:
            nonlocal attempts
            attempts += 1
            await conn.execute(text(f"INSERT INTO {probe} VALUES (:n)"), {"n": attempts})
            if attempts < 3:
                raise Conflict("try again")

        try:
            await held.run(work, retries_max=5)
        finally:
            await held.close()
        async with pg_engine.connect() as conn:
            rows = (await conn.execute(text(f"SELECT v FROM {probe}"))).scalars().all()
        assert rows == [3]

    async def test_a_cancelled_transaction_never_goes_back_to_the_pool_open(
        self, pg_engine: AsyncEngine, probe: str
    ) -> None:
        held = HeldConnections(pg_engine, begin_ahead=lambda: True)
        before = _checked_out(pg_engine)
        started = asyncio.Event()
        pids: list[object] = []

        async def slow(conn: AsyncConnection) -> None:
            pids.append(await _backend_pid(conn))
            await conn.execute(text(f"INSERT INTO {probe} VALUES (1)"))
            started.set()
            await conn.execute(text("SELECT pg_sleep(5)"))

        await _cancel_once_started(held.run(slow), started)
        assert held.held == 0
        assert _checked_out(pg_engine) == before
        # Its session is gone (discarded, not pooled mid-transaction): the insert with it.
        async with pg_engine.connect() as conn:
            for _ in range(50):
                alive = (
                    await conn.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                        {"pid": pids[0]},
                    )
                ).scalar_one()
                if not alive:
                    break
                await asyncio.sleep(0.1)
        assert alive == 0
        assert await self._count(pg_engine, probe) == 0
        try:
            assert await held.run(lambda conn: _one(conn)) == 1
        finally:
            await held.close()

    async def test_close_ends_a_transaction_begun_ahead(
        self, pg_engine: AsyncEngine, probe: str
    ) -> None:
        held = HeldConnections(pg_engine, begin_ahead=lambda: True)
        pid = await held.run(_backend_pid)
        assert await self._state(pg_engine, pid) == "idle in transaction"
        await held.close()
        # Back in the pool, out of any transaction.
        assert await self._state(pg_engine, pid) == "idle"


async def _cancel_once_started(running: Coroutine[Any, Any, Any], started: asyncio.Event) -> None:
    """Run `running`, cancel it once `started` is set (mid-statement), expect the cancel."""
    task = asyncio.create_task(running)
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _connection_of(conn: AsyncConnection) -> object:
    return (await conn.get_raw_connection()).driver_connection


async def _one(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT 1"))).scalar_one())


class TestIsRetryable:
    async def test_unique_violation_on_postgresql_is_retryable(
        self, pg_engine: AsyncEngine
    ) -> None:
        async with pg_engine.connect() as conn:
            await conn.execute(text("CREATE TEMP TABLE uniq (v int primary key)"))
            await conn.execute(text("INSERT INTO uniq VALUES (1)"))
            with pytest.raises(IntegrityError) as caught:
                await conn.execute(text("INSERT INTO uniq VALUES (1)"))
            await conn.rollback()
        assert is_retryable(caught.value)

    def test_plain_errors_are_not(self) -> None:
        assert not is_retryable(ValueError("x"))
        assert is_retryable(Conflict("x"))


class TestLockName:
    async def test_one_holder_at_a_time_until_commit(self, pg_engine: AsyncEngine) -> None:
        async with pg_engine.connect() as first, pg_engine.connect() as second:
            await first.begin()
            await lock_name(first, "probe:one")
            await second.begin()
            waiting = asyncio.create_task(lock_name(second, "probe:one"))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            async with pg_engine.begin() as third:
                await asyncio.wait_for(lock_name(third, "probe:two"), 5)  # another lock
            await first.commit()
            await asyncio.wait_for(waiting, 5)
            await second.commit()


class TestSystemAccountsTogether:
    async def test_concurrent_first_callers_create_each_account_once(self, db: AsyncEngine) -> None:
        """API processes starting together on a fresh database all call it at once."""
        async with db.connect() as conn:
            present = {currency for _, currency in await _system_currencies(conn)}
        currency = next(c for c in ("CHF", "SEK", "NOK", "DKK", "PLN", "CZK") if c not in present)

        async def ensure() -> None:
            async with db.begin() as conn:
                await ensure_system_accounts(conn, currency)

        await asyncio.gather(*(ensure() for _ in range(8)))
        async with db.connect() as conn:
            names = [name for name, c in await _system_currencies(conn) if c == currency]
            accounts = await list_system_accounts(conn)
        assert sorted(names) == sorted(SYSTEM_ACCOUNT_CODES) and len(set(names)) == len(names)
        assert sum(1 for _, a in accounts if a.currency == currency) == len(SYSTEM_ACCOUNT_CODES)


class TestSystemAccountsPresent:
    async def test_present_accounts_take_no_lock(self, pg_db: AsyncEngine) -> None:
        """Every wallet opening checks them: once they exist, openings do not queue."""
        async with pg_db.begin() as conn:
            await ensure_system_accounts(conn, "INR")
        async with pg_db.connect() as holder:
            await holder.begin()
            await lock_name(holder, "system-accounts:INR")
            async with pg_db.begin() as conn:
                await asyncio.wait_for(ensure_system_accounts(conn, "INR"), 5)
            await holder.rollback()


async def _system_currencies(conn: AsyncConnection) -> list[tuple[str, str]]:
    table = wallet_models.system_accounts
    rows = await conn.execute(select(table.c.name, table.c.currency))
    return [(row.name, row.currency) for row in rows]
