"""Small helpers for ledger tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.db import run_in_transaction
from payflow.ids import uuid7
from payflow.ledger import (
    Account,
    AccountFlags,
    AccountResult,
    Transfer,
    TransferOutcome,
    create_accounts,
    create_transfers,
    lookup_accounts,
)


async def new_accounts(
    engine: AsyncEngine,
    count: int,
    *,
    currency: str = "INR",
    flags: AccountFlags = AccountFlags.NONE,
) -> list[uuid.UUID]:
    """Create `count` fresh accounts and return their ids."""
    ids = [uuid7() for _ in range(count)]
    async with engine.begin() as conn:
        results = await create_accounts(
            conn, [Account(id=i, currency=currency, flags=flags) for i in ids]
        )
    assert results == [AccountResult.OK] * count
    return ids


async def submit(
    engine: AsyncEngine, transfers: Sequence[Transfer], *, now_ns: int | None = None
) -> list[TransferOutcome]:
    """Run one batch in its own transaction, retrying conflicts like an entrypoint does."""
    return await run_in_transaction(
        engine, lambda conn: create_transfers(conn, transfers, now_ns=now_ns)
    )


async def balances(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Account]:
    async with engine.begin() as conn:
        return {a.id: a for a in await lookup_accounts(conn, ids)}
