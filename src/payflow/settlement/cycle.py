"""The settlement cycle: for each merchant whose turn has come, one settlement of its
unsettled payments, its fee taken and its payout started, in one transaction.

Two workers (or a worker and an operator's run) never settle one merchant at once: the
merchant's schedule row is locked first (`FOR UPDATE SKIP LOCKED` on PostgreSQL: a worker
skips a merchant another is settling; SQLite has one writer). Then the ledger accounts,
in one ordered statement as the ledger's batches take them, and only then the items, so
the cycle and the `settlement` consumer always lock in the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.config import Settings
from payflow.db import is_postgresql
from payflow.events.outbox import emit
from payflow.ids import uuid7
from payflow.ledger import Transfer, create_transfers, lock_accounts
from payflow.merchants.domain import Merchant
from payflow.merchants.service import get_merchant
from payflow.payouts import service as payouts
from payflow.payouts.domain import Destination
from payflow.settlement import models
from payflow.settlement.domain import (
    Item,
    Line,
    Settlement,
    SettlementStatus,
    fee_transfer_id,
    line_of,
    next_run_at,
    payout_id_of,
    totals_of,
)
from payflow.settlement.events import SETTLEMENT_CREATED, settlement_event
from payflow.settlement.service import FALLBACK_INTERVAL_S
from payflow.settlement.views import public_id
from payflow.transfers.domain import succeeded
from payflow.wallets.domain import SystemAccount, TransferCode
from payflow.wallets.service import ensure_system_accounts, get_wallet, system_account_id


async def _lock_schedules(
    conn: AsyncConnection, merchant_ids: Sequence[uuid.UUID], *, now: int, force: bool
) -> list[uuid.UUID]:
    """The merchants of `merchant_ids` this transaction may settle now, their schedules
    locked; a merchant being settled elsewhere is skipped, not waited for."""
    table = models.schedules
    query = (
        select(table.c.merchant_id)
        .where(table.c.merchant_id.in_(merchant_ids))
        .order_by(table.c.merchant_id)
    )
    if not force:
        query = query.where(table.c.next_run_at <= now)
    if is_postgresql(conn):
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).scalars())


async def _unsettled(
    conn: AsyncConnection, merchant: Merchant, *, cutoff: int, limit: int
) -> list[Item]:
    """The merchant's oldest unsettled payments up to `cutoff`, locked against refunds
    being counted meanwhile. Payments refunded in full have nothing to settle."""
    table = models.items
    query = (
        select(table)
        .where(
            table.c.settlement_id.is_(None),
            table.c.merchant_id == merchant.id,
            table.c.currency == merchant.settlement_currency,
            table.c.succeeded_at <= cutoff,
            table.c.refunded_amount < table.c.amount,
        )
        .order_by(table.c.succeeded_at, table.c.payment_id)
        .limit(limit)
    )
    if is_postgresql(conn):
        query = query.with_for_update()
    return [
        Item(row.payment_id, row.amount, row.refunded_amount, row.succeeded_at)
        for row in await conn.execute(query)
    ]


async def _take_fee(conn: AsyncConnection, settlement: Settlement) -> bool:
    [outcome] = await create_transfers(
        conn,
        [
            Transfer(
                id=fee_transfer_id(settlement.id),
                debit_account_id=settlement.wallet_id,
                credit_account_id=system_account_id(SystemAccount.FEES, settlement.currency),
                amount=settlement.fee_amount,
                currency=settlement.currency,
                code=int(TransferCode.FEE),
            )
        ],
    )
    return succeeded(outcome.code)


async def _record(conn: AsyncConnection, settlement: Settlement, lines: list[Line]) -> None:
    """The settlement, its lines, and its payments marked as in it."""
    values = {c.name: getattr(settlement, c.name) for c in models.settlements.c}
    values["status"] = settlement.status.value
    await conn.execute(insert(models.settlements).values(values))
    await conn.execute(
        insert(models.lines),
        [
            {
                "settlement_id": settlement.id,
                "payment_id": line.payment_id,
                "amount": line.amount,
                "refunded_amount": line.refunded_amount,
                "fee_amount": line.fee_amount,
                "net_amount": line.net_amount,
                "succeeded_at": line.succeeded_at,
            }
            for line in lines
        ],
    )
    items = models.items
    marked = await conn.execute(
        update(items)
        .where(
            items.c.payment_id.in_([line.payment_id for line in lines]),
            items.c.settlement_id.is_(None),
        )
        .values(settlement_id=settlement.id, updated_at=settlement.created_at)
    )
    # The second guard of "one live settlement per payment": the rows were read unsettled
    # under lock; if any is not, the transaction must not commit.
    assert marked.rowcount == len(lines), (settlement.id, marked.rowcount, len(lines))


async def _settle_one(
    conn: AsyncConnection, settings: Settings, merchant: Merchant, *, now: int
) -> tuple[Settlement | None, bool]:
    """One settlement of the merchant's unsettled payments, if there is money to pay;
    and whether payments were left out (the batch was full)."""
    limit = settings.settlement_items_max
    items = await _unsettled(conn, merchant, cutoff=now, limit=limit)
    lines = [line_of(item, fee_bps=merchant.fee_bps) for item in items]
    batch_full = len(items) >= limit
    totals = totals_of(lines)
    if totals.net_amount <= 0:
        return None, False
    settlement_id = uuid7()
    settlement = Settlement(
        id=settlement_id,
        merchant_id=merchant.id,
        merchant_user_id=merchant.user_id,
        wallet_id=merchant.wallet_id,
        currency=merchant.settlement_currency,
        period_start=min(line.succeeded_at for line in lines),
        period_end=now,
        line_count=totals.line_count,
        gross_amount=totals.gross_amount,
        refunded_amount=totals.refunded_amount,
        fee_amount=totals.fee_amount,
        net_amount=totals.net_amount,
        status=SettlementStatus.PROCESSING,
        failure_reason=None,
        payout_id=payout_id_of(settlement_id),
        created_at=now,
        updated_at=now,
    )
    # A wallet that can no longer pay the fee (the merchant spent the money) is settled
    # next cycle: nothing is written now.
    if settlement.fee_amount > 0 and not await _take_fee(conn, settlement):
        return None, False
    await _record(conn, settlement, lines)
    await _start_payout(conn, settings, merchant, settlement)
    await emit(conn, [settlement_event(settlement, SETTLEMENT_CREATED)])
    return settlement, batch_full


async def _start_payout(
    conn: AsyncConnection, settings: Settings, merchant: Merchant, settlement: Settlement
) -> None:
    wallet = await get_wallet(conn, merchant.wallet_id)
    assert wallet is not None, merchant.wallet_id
    await payouts.initiate(
        conn,
        payout_id=settlement.payout_id,
        wallet=wallet,
        amount=settlement.net_amount,
        destination=Destination(
            vpa=merchant.vpa, bank_code=merchant.bank_code, account_number=merchant.account_number
        ),
        description=f"PayFlow settlement {public_id(settlement)}",
        deadline_s=settings.payout_deadline_s,
        source="settlement",
        source_id=public_id(settlement),
    )


async def _reschedule(conn: AsyncConnection, merchant_id: uuid.UUID, *, now: int, at: int) -> None:
    table = models.schedules
    await conn.execute(
        update(table)
        .where(table.c.merchant_id == merchant_id)
        .values(next_run_at=at, last_run_at=now, updated_at=now)
    )


async def settle(
    conn: AsyncConnection,
    settings: Settings,
    *,
    merchant_ids: Sequence[uuid.UUID],
    now: int,
    force: bool,
) -> list[Settlement]:
    """Settle these merchants (those due, or all of them with `force`) in the caller's
    transaction, and schedule their next cycle; returns the settlements made."""
    locked = await _lock_schedules(conn, merchant_ids, now=now, force=force)
    merchants = [m for m in [await get_merchant(conn, i) for i in locked] if m is not None]
    fee_accounts: set[uuid.UUID] = set()
    for currency in sorted({m.settlement_currency for m in merchants}):
        await ensure_system_accounts(conn, currency)
        fee_accounts.add(system_account_id(SystemAccount.FEES, currency))
    await lock_accounts(conn, sorted({m.wallet_id for m in merchants} | fee_accounts))
    made: list[Settlement] = []
    by_id = {m.id: m for m in merchants}
    for merchant_id in locked:
        merchant = by_id.get(merchant_id)
        settlement, batch_full = None, False
        if merchant is not None and merchant.is_active:
            settlement, batch_full = await _settle_one(conn, settings, merchant, now=now)
        if settlement is not None:
            made.append(settlement)
        interval_s = merchant.settlement_interval_s if merchant else FALLBACK_INTERVAL_S
        at = next_run_at(now, interval_s=interval_s, batch_full=batch_full)
        await _reschedule(conn, merchant_id, now=now, at=at)
    return made
