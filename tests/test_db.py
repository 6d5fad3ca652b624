"""Engines, transactions and retries (`payflow.db`)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.db import Conflict, driver_connection, is_retryable, run_in_transaction


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
