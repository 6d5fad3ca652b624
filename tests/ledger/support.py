"""Assertions and setup shared by the ledger's use-case tests (on top of `helpers`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.ids import uuid7
from payflow.ledger import (
    Transfer,
    TransferOutcome,
    TransferResult,
    lookup_transfers,
    models,
)
from tests.ledger.helpers import balances, new_accounts, submit

Counters = tuple[int, int, int, int]


def codes(outcomes: Sequence[TransferOutcome]) -> list[TransferResult]:
    return [outcome.code for outcome in outcomes]


async def counters(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Counters]:
    """(debits pending, debits posted, credits pending, credits posted) per account."""
    return {
        a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in (await balances(engine, ids)).values()
    }


async def stored(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> list[Transfer]:
    async with engine.begin() as conn:
        return await lookup_transfers(conn, ids)


async def expiry_rows(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The pending-expiry queue rows of `ids`: transfer id → expires_at."""
    table = models.pending_expiries
    async with engine.begin() as conn:
        rows = await conn.execute(
            select(table.c.transfer_id, table.c.expires_at).where(table.c.transfer_id.in_(ids))
        )
        return {row[0]: row[1] for row in rows}


async def fund(
    engine: AsyncEngine, account_id: uuid.UUID, amount: int, *, currency: str = "INR"
) -> uuid.UUID:
    """Credit `account_id` with `amount` from a fresh source account; returns the source."""
    (source,) = await new_accounts(engine, 1, currency=currency)
    outcomes = await submit(engine, [Transfer(uuid7(), source, account_id, amount, currency)])
    assert codes(outcomes) == [TransferResult.OK]
    return source
