"""The `payouts` consumer: each saga event makes the payout take its next step.

The saga is choreographed: whoever wrote a step's event does not call the next step; this
consumer hears it and takes it, in the runner's transaction (events/consumers.py). An
event whose payout has moved on (a duplicate, or the sweeper got there first) is a no-op.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.errors import PayFlowError
from payflow.events.consumers import Consumer
from payflow.events.domain import Event
from payflow.ids import parse_public_id
from payflow.ledger import lock_accounts
from payflow.payouts import models, service
from payflow.payouts.domain import Step
from payflow.wallets.domain import SystemAccount
from payflow.wallets.service import system_account_id

# The steps that are followed by another without a bank call.
HANDLED: frozenset[str] = frozenset(
    s.value
    for s in (
        Step.INITIATED,
        Step.DEBITED,
        Step.DEBIT_FAILED,
        Step.CREDITED,
        Step.CREDIT_FAILED,
        Step.REFUND_REQUESTED,
        Step.REFUNDED,
    )
)


def _payout_id(event: Event) -> uuid.UUID | None:
    try:
        return parse_public_id("po", event.aggregate_id)
    except PayFlowError:
        return None


async def lock_payout_accounts(conn: AsyncConnection, payout_ids: Sequence[uuid.UUID]) -> None:
    """Lock the wallets and transit accounts these payouts move money between (one ordered
    statement, as ledger batches do), so saga steps never deadlock with payments."""
    table = models.payouts
    rows = (
        await conn.execute(
            select(table.c.wallet_id, table.c.currency).where(table.c.id.in_(payout_ids))
        )
    ).all()
    accounts = {row.wallet_id for row in rows} | {
        system_account_id(SystemAccount.PAYOUTS_TRANSIT, row.currency) for row in rows
    }
    await lock_accounts(conn, sorted(accounts))


async def lock(conn: AsyncConnection, events: Sequence[Event]) -> None:
    ids = [i for i in (_payout_id(e) for e in events) if i is not None]
    if ids:
        await lock_payout_accounts(conn, ids)


async def handle(conn: AsyncConnection, event: Event) -> None:
    """Take the step after the one `event` reports, if the payout is still there."""
    payout_id = _payout_id(event)
    if payout_id is None:
        raise ValueError(f"{event.type} names no payout: {event.aggregate_id!r}")
    payout = await service.get_payout(conn, payout_id, for_update=True)
    if payout is None:
        raise ValueError(f"{event.type} for an unknown payout {event.aggregate_id}")
    if payout.step.value != event.type:
        return
    await service.advance(conn, payout)


# Each batch holds its wallets' locks until it commits: keep it short.
BATCH_SIZE_MAX = 64

CONSUMER = Consumer(
    name="payouts",
    event_types=HANDLED,
    handle=handle,
    batch_size_max=BATCH_SIZE_MAX,
    lock=lock,
)
