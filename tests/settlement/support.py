"""Helpers for the settlement tests: merchants with fees, payments that settlement has
heard of, runs of the cycle over HTTP, and the money on every side."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy import select, update

from payflow.events import models as events_models
from payflow.ids import parse_public_id
from payflow.ledger.models import transfers as ledger_transfers
from payflow.settlement import models
from payflow.wallets.domain import SystemAccount
from payflow.wallets.service import system_account_id
from tests.api.conftest import User, key
from tests.payments.support import Merchant, merchant, paid
from tests.settlement.conftest import World

WAIT_S = 20.0


async def shop(world: World, op: User, *, fee_bps: int = 0, **fields: Any) -> Merchant:
    """A merchant (settled to a bank account the simulator knows) with `fee_bps`."""
    made = await merchant(world.api, **fields)
    if fee_bps:
        response = await world.api.client.patch(
            f"/v1/operator/merchants/{made.id}", json={"fee_bps": fee_bps}, headers=op.auth
        )
        assert response.status_code == 200, response.text
    return made


async def _eventually(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.03)


async def items(world: World, payment_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Settlement's own record of these payments, by public id (those it has heard of)."""
    table = models.items
    ids = [parse_public_id("pay", p) for p in payment_ids]
    async with world.api.engine.connect() as conn:
        rows = (await conn.execute(select(table).where(table.c.payment_id.in_(ids)))).all()
    return {f"pay_{row.payment_id.hex}": dict(row._mapping) for row in rows}


async def heard(
    world: World, payments: list[str], *, refunded: dict[str, int] | None = None
) -> None:
    """Wait until the `settlement` consumer has recorded these payments (and refunds)."""
    refunded = refunded or {}

    async def done() -> bool:
        found = await items(world, payments)
        return len(found) == len(payments) and all(
            found[p]["refunded_amount"] == refunded.get(p, 0) for p in payments
        )

    await _eventually(done, f"settlement to hear of {payments}")


async def pay_all(world: World, customer: User, to: Merchant, amounts: list[int]) -> list[str]:
    payments = [await paid(world.api, customer, to, amount) for amount in amounts]
    await heard(world, payments)
    return payments


async def run(world: World, op: User, merchant_id: str | None = None) -> list[dict[str, Any]]:
    body = {} if merchant_id is None else {"merchant": merchant_id}
    response = await world.api.client.post(
        "/v1/operator/settlements/run", json=body, headers={**op.auth, **key()}
    )
    assert response.status_code == 200, response.text
    made: list[dict[str, Any]] = response.json()["data"]
    return made


async def get(world: World, auth: dict[str, str], settlement_id: str) -> dict[str, Any]:
    response = await world.api.client.get(f"/v1/settlements/{settlement_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ended(world: World, auth: dict[str, str], settlement_id: str) -> dict[str, Any]:
    """The settlement once its payout's saga ended (paid or failed)."""

    async def check() -> dict[str, Any] | None:
        body = await get(world, auth, settlement_id)
        return None if body["status"] == "processing" else body

    result: dict[str, Any] = await _eventually(check, f"{settlement_id} to end")
    return result


async def fees_from(world: World, wallet_id: str, currency: str = "INR") -> int:
    """What the FEES account holds from one wallet (fees less their reversals): unlike
    the account's total, other tests' settlements running meanwhile do not change it."""
    wallet = parse_public_id("wal", wallet_id)
    fees = system_account_id(SystemAccount.FEES, currency)
    t = ledger_transfers
    async with world.api.engine.connect() as conn:
        rows = await conn.execute(
            select(t.c.debit_account_id, t.c.amount, t.c.flags).where(
                ((t.c.debit_account_id == wallet) & (t.c.credit_account_id == fees))
                | ((t.c.debit_account_id == fees) & (t.c.credit_account_id == wallet))
            )
        )
        found = rows.all()
    assert all(flags == 0 for _, _, flags in found), "fees are single-phase transfers"
    return sum(amount if debit == wallet else -amount for debit, amount, _ in found)


async def events_of(world: World, settlement_id: str) -> list[tuple[str, dict[str, Any]]]:
    table = events_models.outbox
    async with world.api.engine.connect() as conn:
        rows = await conn.execute(
            select(table.c.type, table.c.data)
            .where(table.c.aggregate_id == settlement_id)
            .order_by(table.c.sequence)
        )
        return [(row.type, json.loads(row.data)) for row in rows]


async def count_settlements(world: World) -> int:
    async with world.api.engine.connect() as conn:
        return len((await conn.execute(select(models.settlements.c.id))).all())


def lines_by_payment(settlement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["payment_id"]: line for line in settlement["lines"]}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


async def lines_per_payment(world: World, payment_ids: list[str]) -> dict[str, int]:
    """In how many live (processing or paid) settlements each payment is."""
    lines, settlements = models.lines, models.settlements
    ids = [parse_public_id("pay", p) for p in payment_ids]
    async with world.api.engine.connect() as conn:
        rows = await conn.execute(
            select(lines.c.payment_id)
            .join(settlements, settlements.c.id == lines.c.settlement_id)
            .where(lines.c.payment_id.in_(ids), settlements.c.status != "failed")
        )
        counts: dict[str, int] = {}
        for row in rows:
            name = f"pay_{row.payment_id.hex}"
            counts[name] = counts.get(name, 0) + 1
    return counts


async def set_next_run(world: World, merchant_id: uuid.UUID, at: int) -> None:
    table = models.schedules
    async with world.api.engine.begin() as conn:
        result = await conn.execute(
            update(table).where(table.c.merchant_id == merchant_id).values(next_run_at=at)
        )
        assert result.rowcount == 1


async def next_run_of(world: World, merchant_id: uuid.UUID) -> int:
    table = models.schedules
    async with world.api.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(table.c.next_run_at).where(table.c.merchant_id == merchant_id)
                )
            ).scalar_one()
        )


async def eventually_listed(world: World, seller: Merchant) -> dict[str, Any]:
    """The merchant's one settlement, once the worker has made it."""

    async def check() -> dict[str, Any] | None:
        response = await world.api.client.get("/v1/settlements", headers=seller.auth)
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        assert len(data) <= 1, data
        return data[0] if data else None

    found: dict[str, Any] = await _eventually(check, "the worker to settle")
    return found
