"""Settlement's record of payments, straight against each database: every event counts
once, in whatever order it arrives, and a settlement ends once."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.ids import uuid7
from payflow.settlement import models, service


async def refunded_of(engine: AsyncEngine, payment_id: uuid.UUID) -> int:
    table = models.items
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(table.c.refunded_amount).where(table.c.payment_id == payment_id)
                )
            ).scalar_one()
        )


async def record(engine: AsyncEngine, payment_id: uuid.UUID, amount: int = 5_000) -> None:
    async with engine.begin() as conn:
        await service.record_payment(
            conn,
            payment_id=payment_id,
            merchant_id=uuid7(),
            merchant_user_id=uuid7(),
            currency="INR",
            amount=amount,
            succeeded_at=1,
        )


async def refund(
    engine: AsyncEngine, refund_id: uuid.UUID, payment_id: uuid.UUID, amount: int
) -> None:
    async with engine.begin() as conn:
        await service.record_refund(conn, refund_id=refund_id, payment_id=payment_id, amount=amount)


async def test_a_refund_heard_before_its_payment_still_counts(db: AsyncEngine) -> None:
    payment_id, refund_id = uuid7(), uuid7()
    await refund(db, refund_id, payment_id, 700)
    await refund(db, refund_id, payment_id, 700)
    await record(db, payment_id)
    assert await refunded_of(db, payment_id) == 700


async def test_each_refund_and_payment_counts_once(db: AsyncEngine) -> None:
    payment_id = uuid7()
    await record(db, payment_id)
    await record(db, payment_id, amount=9_999)
    first, second = uuid7(), uuid7()
    for refund_id, amount in ((first, 1_000), (first, 1_000), (second, 500)):
        await refund(db, refund_id, payment_id, amount)
    assert await refunded_of(db, payment_id) == 1_500
    table = models.items
    async with db.connect() as conn:
        amount = (
            await conn.execute(select(table.c.amount).where(table.c.payment_id == payment_id))
        ).scalar_one()
    assert amount == 5_000


async def test_ending_an_unknown_settlement_does_nothing(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        assert await service.mark_paid(conn, uuid7()) is None
        assert await service.mark_failed(conn, uuid7(), reason="account_closed") is None
