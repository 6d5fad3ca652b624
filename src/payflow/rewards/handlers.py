"""What rewards does when payments happen: pays cashback, and takes it back on refunds.

Runs as the idempotent consumer `rewards` (events/consumers.py): each handler runs in the
runner's transaction after the event was recorded as processed, calls no network, and
derives every id from the event, so a retry writes the same rows. Beyond the runner's
record, the ledger transfer ids derived from the event and the one-cashback-per-payment
index keep each effect single even if that record were lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.events.consumers import Consumer
from payflow.events.domain import Event
from payflow.ledger import lock_accounts
from payflow.rewards import service
from payflow.rewards.events import PAYMENT_REFUNDED, PAYMENT_SUCCEEDED, purchase_of, refund_of
from payflow.transfers.events import TRANSFER_COMPLETED
from payflow.wallets.domain import SystemAccount
from payflow.wallets.service import system_account_id


async def lock(conn: AsyncConnection, events: Sequence[Event]) -> None:
    """Lock the pools and wallets these events' cashbacks and clawbacks will move money
    between, before any of them runs (see `Consumer.lock`). A malformed event locks
    nothing here; its handler raises and it is retried alone."""
    accounts: set[uuid.UUID] = set()
    refunds: list[str] = []
    for event in events:
        try:
            if event.type == PAYMENT_REFUNDED:
                refund = refund_of(event)
                refunds.append(refund.source_id)
                accounts.add(system_account_id(SystemAccount.REWARDS_POOL, refund.currency))
                continue
            purchase = purchase_of(event)
        except (ValueError, KeyError, TypeError):
            continue
        if purchase is not None:
            accounts.add(purchase.payer_wallet_id)
            accounts.add(system_account_id(SystemAccount.REWARDS_POOL, purchase.currency))
    accounts |= await service.wallets_of_cashbacks(conn, refunds)
    await lock_accounts(conn, sorted(accounts))


async def handle(conn: AsyncConnection, event: Event) -> None:
    """Pay the cashback a payment earns, or claw back what a refund undoes."""
    if event.type == PAYMENT_REFUNDED:
        await service.claw_back(conn, refund_of(event), event_id=event.id)
        return
    purchase = purchase_of(event)
    if purchase is not None:
        await service.pay_cashback(conn, purchase, event_id=event.id)


# Each batch holds its wallets' locks until it commits, and those customers' payments
# wait for them: batches stay small enough to commit in milliseconds.
BATCH_SIZE_MAX = 64

CONSUMER = Consumer(
    name="rewards",
    event_types=frozenset({TRANSFER_COMPLETED, PAYMENT_SUCCEEDED, PAYMENT_REFUNDED}),
    handle=handle,
    batch_size_max=BATCH_SIZE_MAX,
    lock=lock,
)
