from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.ids import uuid7
from payflow.ledger import Transfer, TransferResult
from tests.ledger.helpers import balances, new_accounts, submit


async def test_a_transfer_moves_money(db: AsyncEngine) -> None:
    a, b = await new_accounts(db, 2)
    outcomes = await submit(db, [Transfer(uuid7(), a, b, 150, "INR")])
    assert [o.code for o in outcomes] == [TransferResult.OK]
    accounts = await balances(db, [a, b])
    assert accounts[a].debits_posted == 150
    assert accounts[b].credits_posted == 150
