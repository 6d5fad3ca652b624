"""Settlement's use cases driven by others' events: remember succeeded payments and their
refunds, and finish a settlement when its payout's saga ends. Each takes the caller's
connection and never commits; the cycle that makes settlements is in cycle.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import is_postgresql
from payflow.events.outbox import emit
from payflow.ledger import Transfer, create_transfers
from payflow.merchants.service import get_merchant
from payflow.settlement import models
from payflow.settlement.domain import (
    Settlement,
    SettlementStatus,
    fee_reversal_id,
    next_run_at,
)
from payflow.settlement.events import SETTLEMENT_FAILED, SETTLEMENT_PAID, settlement_event
from payflow.timestamps import now_ns
from payflow.transfers.domain import succeeded
from payflow.wallets.domain import SystemAccount, TransferCode
from payflow.wallets.service import system_account_id

# A merchant gone missing (it never should) is settled on the default daily cycle.
FALLBACK_INTERVAL_S = 86_400


def insert_ignoring_duplicates(conn: AsyncConnection, table: Any) -> Any:
    dialect = postgresql if is_postgresql(conn) else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def settlement_of(row: Any) -> Settlement:
    values = dict(row._mapping)
    values["status"] = SettlementStatus(values["status"])
    return Settlement(**values)


async def get_settlement(
    conn: AsyncConnection, settlement_id: uuid.UUID, *, for_update: bool = False
) -> Settlement | None:
    table = models.settlements
    query = select(table).where(table.c.id == settlement_id)
    if for_update and is_postgresql(conn):
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else settlement_of(row)


async def record_payment(
    conn: AsyncConnection,
    *,
    payment_id: uuid.UUID,
    merchant_id: uuid.UUID,
    merchant_user_id: uuid.UUID,
    currency: str,
    amount: int,
    succeeded_at: int,
) -> None:
    """Remember a succeeded payment as settleable, with the refunds already heard of, and
    give its merchant a schedule (first run one interval after its first payment)."""
    assert amount > 0, amount
    refunds = models.refunds
    refunded = (
        await conn.execute(
            select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
                refunds.c.payment_id == payment_id
            )
        )
    ).scalar_one()
    at = now_ns()
    await conn.execute(
        insert_ignoring_duplicates(conn, models.items).values(
            payment_id=payment_id,
            merchant_id=merchant_id,
            merchant_user_id=merchant_user_id,
            currency=currency,
            amount=amount,
            refunded_amount=min(int(refunded), amount),
            succeeded_at=succeeded_at,
            settlement_id=None,
            created_at=at,
            updated_at=at,
        )
    )
    merchant = await get_merchant(conn, merchant_id)
    interval_s = merchant.settlement_interval_s if merchant else FALLBACK_INTERVAL_S
    await conn.execute(
        insert_ignoring_duplicates(conn, models.schedules).values(
            merchant_id=merchant_id,
            next_run_at=next_run_at(succeeded_at, interval_s=interval_s, batch_full=False),
            last_run_at=None,
            updated_at=at,
        )
    )


async def record_refund(
    conn: AsyncConnection, *, refund_id: uuid.UUID, payment_id: uuid.UUID, amount: int
) -> None:
    """Count a refund against its payment, once. A payment already in a settlement still
    has its refunded amount kept: if that settlement fails, the next one is right."""
    assert amount > 0, amount
    inserted = await conn.execute(
        insert_ignoring_duplicates(conn, models.refunds).values(
            refund_id=refund_id, payment_id=payment_id, amount=amount, created_at=now_ns()
        )
    )
    if inserted.rowcount != 1:
        return
    items = models.items
    total = items.c.refunded_amount + amount
    await conn.execute(
        update(items)
        .where(items.c.payment_id == payment_id)
        # Payments never refund more than they took; the cap only guards the CHECK.
        .values(
            refunded_amount=case((total > items.c.amount, items.c.amount), else_=total),
            updated_at=now_ns(),
        )
    )


async def _finish(
    conn: AsyncConnection, settlement_id: uuid.UUID, status: SettlementStatus, **values: Any
) -> Settlement | None:
    """processing → `status`; None if it is not processing (a duplicate event)."""
    table = models.settlements
    row = (
        await conn.execute(
            update(table)
            .where(
                table.c.id == settlement_id,
                table.c.status == SettlementStatus.PROCESSING.value,
            )
            .values(status=status.value, updated_at=now_ns(), **values)
            .returning(*table.c)
        )
    ).first()
    return None if row is None else settlement_of(row)


async def mark_paid(conn: AsyncConnection, settlement_id: uuid.UUID) -> Settlement | None:
    """The payout reached the merchant's bank: the settlement is paid."""
    paid = await _finish(conn, settlement_id, SettlementStatus.PAID)
    if paid is not None:
        await emit(conn, [settlement_event(paid, SETTLEMENT_PAID)])
    return paid


async def mark_failed(
    conn: AsyncConnection, settlement_id: uuid.UUID, *, reason: str
) -> Settlement | None:
    """The payout failed (its money is back in the merchant's wallet): give the fee back
    and release the payments, so the next cycle settles them again."""
    failed = await _finish(conn, settlement_id, SettlementStatus.FAILED, failure_reason=reason)
    if failed is None:
        return None
    if failed.fee_amount > 0:
        fees = system_account_id(SystemAccount.FEES, failed.currency)
        [outcome] = await create_transfers(
            conn,
            [
                Transfer(
                    id=fee_reversal_id(failed.id),
                    debit_account_id=fees,
                    credit_account_id=failed.wallet_id,
                    amount=failed.fee_amount,
                    currency=failed.currency,
                    code=int(TransferCode.FEE),
                )
            ],
        )
        # FEES may run negative and the wallet only receives: anything else is a bug, and
        # the transaction must not commit.
        assert succeeded(outcome.code), (failed.id, outcome.code)
    items = models.items
    await conn.execute(
        update(items)
        .where(items.c.settlement_id == failed.id)
        .values(settlement_id=None, updated_at=now_ns())
    )
    await emit(conn, [settlement_event(failed, SETTLEMENT_FAILED)])
    return failed
