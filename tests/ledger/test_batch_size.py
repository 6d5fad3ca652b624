"""The batch engine at full size: one call, a constant number of statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import get_settings
from payflow.db import is_postgresql
from payflow.ids import uuid7
from payflow.ledger import Transfer, TransferFlags, repository
from tests.ledger.helpers import balances, new_accounts, submit


@contextmanager
def count_statements(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement sent, through SQLAlchemy or straight to the asyncpg driver."""
    sent: list[str] = []

    def on_execute(*args: Any) -> None:
        sent.append(str(args[2]))

    class CountingDriver:
        def __init__(self, driver: Any) -> None:
            self._driver = driver

        async def fetch(self, query: str, *params: Any) -> Any:
            sent.append(query)
            return await self._driver.fetch(query, *params)

        async def execute(self, query: str, *params: Any) -> Any:
            sent.append(query)
            return await self._driver.execute(query, *params)

        async def fetchval(self, query: str, *params: Any) -> Any:
            sent.append(query)
            return await self._driver.fetchval(query, *params)

    real = repository.driver_connection

    async def counting(conn: Any) -> CountingDriver:
        return CountingDriver(await real(conn))

    monkeypatch.setattr(repository, "driver_connection", counting)
    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


def _ring(accounts: list, count: int, offset: int) -> list[Transfer]:
    n = len(accounts)
    return [
        Transfer(uuid7(), accounts[(i + offset) % n], accounts[(i + offset + 1) % n], 1, "INR")
        for i in range(count)
    ]


class TestFullBatch:
    async def test_the_largest_batch_in_one_call(self, db: AsyncEngine) -> None:
        size = get_settings().ledger_batch_size_max
        assert size >= 8000
        accounts = await new_accounts(db, 500)
        outcomes = await submit(db, _ring(accounts, size, 0))
        assert all(o.ok for o in outcomes)
        after = await balances(db, accounts)
        # Each account is debited and credited size/500 times (± one at the seam).
        assert sum(a.debits_posted for a in after.values()) == size
        assert sum(a.credits_posted for a in after.values()) == size

    async def test_statement_count_does_not_grow_with_the_batch(
        self, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        accounts = await new_accounts(db, 300)
        counts = {}
        escalated = {}
        for size in (2, 20, 2000):
            with count_statements(db, monkeypatch) as sent:
                outcomes = await submit(db, _ring(accounts, size, size))
            assert all(o.ok for o in outcomes)
            escalated[size] = any("pg_advisory_xact_lock" in s for s in sent)
            counts[size] = len(
                [s for s in sent if "pg_advisory_xact_lock" not in s and "BEGIN" not in s]
            )
        assert counts[2] == counts[20] == counts[2000], counts
        # PostgreSQL: lock-and-load, then write. SQLite: read transfers, read accounts,
        # insert transfers, update accounts.
        assert counts[2] == (2 if is_postgresql(db) else 4), counts
        # Only the batch locking more than the threshold (300 accounts) escalates.
        assert escalated == {2: False, 20: False, 2000: is_postgresql(db)}

    async def test_two_phase_batch_statement_count(
        self, db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        accounts = await new_accounts(db, 40)
        holds = [
            Transfer(uuid7(), accounts[i], accounts[i + 1], 10, "INR", flags=TransferFlags.PENDING)
            for i in range(39)
        ]
        assert all(o.ok for o in await submit(db, holds))
        with count_statements(db, monkeypatch) as sent:
            posts = [
                Transfer(uuid7(), pending_id=h.id, flags=TransferFlags.POST_PENDING) for h in holds
            ]
            assert all(o.ok for o in await submit(db, posts))
        statements = [s for s in sent if not s.strip().upper().startswith("BEGIN")]
        # PostgreSQL: read pendings, lock, read them again under the lock, write.
        expected = 4
        assert len(statements) == expected, statements
