"""The `settlement` consumer: what settlement does when others' events arrive.

- `payment.succeeded`: the payment becomes settleable (settlement's own record of it).
- `payment.refunded`: the refund is counted against its payment.
- `TRANSACTION_COMPLETED` / `TRANSACTION_FAILED` of a payout settlement started: the
  settlement is paid, or failed (fee given back, payments released for the next cycle).

Each handler runs in the runner's transaction (events/consumers.py), calls no network and
writes rows keyed by the event's own ids (payment, refund, settlement), so an event
arriving twice changes nothing the second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.errors import PayFlowError
from payflow.events.consumers import Consumer
from payflow.events.domain import Event
from payflow.ids import parse_public_id
from payflow.ledger import lock_accounts
from payflow.payments.events import PAYMENT_REFUNDED, PAYMENT_SUCCEEDED
from payflow.payouts.domain import Step
from payflow.settlement import service
from payflow.settlement.domain import payout_id_of
from payflow.wallets.domain import SystemAccount
from payflow.wallets.service import system_account_id

PAYOUT_COMPLETED = Step.COMPLETED.value
PAYOUT_FAILED = Step.FAILED.value
SOURCE = "settlement"


def _ours(event: Event) -> bool:
    """A payout's end that settlement started (other payouts are none of its business)."""
    return event.type in (PAYOUT_COMPLETED, PAYOUT_FAILED) and event.data.get("source") == SOURCE


async def lock(conn: AsyncConnection, events: Sequence[Event]) -> None:
    """Lock the wallets and FEES accounts that failed settlements' fee reversals move money
    between, before any handler runs (see `Consumer.lock`). A malformed event locks
    nothing; its handler raises and it is retried alone."""
    accounts: set[uuid.UUID] = set()
    for event in events:
        if event.type != PAYOUT_FAILED or not _ours(event):
            continue
        try:
            accounts.add(parse_public_id("wal", str(event.data["wallet_id"])))
            accounts.add(system_account_id(SystemAccount.FEES, str(event.data["currency"])))
        except (KeyError, PayFlowError):
            continue
    if accounts:
        await lock_accounts(conn, sorted(accounts))


def _amount(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if type(value) is not int or value <= 0:
        raise ValueError(f"{key} must be a positive integer, not {value!r}")
    return value


async def _payment_succeeded(conn: AsyncConnection, event: Event) -> None:
    data = event.data
    await service.record_payment(
        conn,
        payment_id=parse_public_id("pay", str(data["payment_id"])),
        merchant_id=parse_public_id("mer", str(data["merchant_id"])),
        merchant_user_id=parse_public_id("usr", str(data["merchant_user_id"])),
        currency=str(data["currency"]),
        amount=_amount(data, "amount"),
        succeeded_at=event.occurred_at,
    )


async def _payment_refunded(conn: AsyncConnection, event: Event) -> None:
    data = event.data
    await service.record_refund(
        conn,
        refund_id=parse_public_id("re", str(data["refund_id"])),
        payment_id=parse_public_id("pay", str(data["payment_id"])),
        amount=_amount(data, "amount"),
    )


async def _payout_ended(conn: AsyncConnection, event: Event) -> None:
    data = event.data
    settlement_id = parse_public_id("stl", str(data["source_id"]))
    if parse_public_id("po", str(data["id"])) != payout_id_of(settlement_id):
        raise ValueError(f"payout {data['id']} does not pay settlement {data['source_id']}")
    if event.type == PAYOUT_COMPLETED:
        await service.mark_paid(conn, settlement_id)
    else:
        reason = str(data.get("failure_reason") or "payout_failed")
        await service.mark_failed(conn, settlement_id, reason=reason[:64])


async def handle(conn: AsyncConnection, event: Event) -> None:
    if event.type == PAYMENT_SUCCEEDED:
        await _payment_succeeded(conn, event)
    elif event.type == PAYMENT_REFUNDED:
        await _payment_refunded(conn, event)
    elif _ours(event):
        await _payout_ended(conn, event)


# A batch with failed settlements holds their wallets' locks until it commits: keep it
# short, as the other consumers that move money do.
BATCH_SIZE_MAX = 64

CONSUMER = Consumer(
    name="settlement",
    event_types=frozenset({PAYMENT_SUCCEEDED, PAYMENT_REFUNDED, PAYOUT_COMPLETED, PAYOUT_FAILED}),
    handle=handle,
    batch_size_max=BATCH_SIZE_MAX,
    lock=lock,
)
