"""Refunds: money back from the merchant's wallet to the customer's, in full or in parts.

Each refund runs in its own transaction with the payment's row locked (PostgreSQL; on
SQLite the one writer serializes them), so concurrent refunds of one payment are checked
one after the other and their sum never exceeds what was captured. The conditional update
and the `refunded_bound` CHECK guard the same in the database.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.idempotency import Claim
from payflow.api.replies import Reply
from payflow.db import Conflict
from payflow.events.outbox import emit
from payflow.identity.domain import Principal
from payflow.ledger import Transfer, create_transfers
from payflow.payments import models
from payflow.payments.domain import (
    Payment,
    Refund,
    RefundReason,
    check_merchant,
    check_refund,
    payment_not_found,
    refund_refused,
)
from payflow.payments.events import payment_refunded
from payflow.payments.queries import get_payment, get_refund
from payflow.payments.views import refund_view
from payflow.transfers.domain import succeeded
from payflow.wallets.domain import TransferCode


async def _add_refunded(conn: AsyncConnection, payment: Payment, amount: int) -> None:
    table = models.payments
    result = await conn.execute(
        update(table)
        .where(
            table.c.id == payment.id,
            table.c.refunded_amount + amount <= table.c.captured_amount,
        )
        .values(refunded_amount=table.c.refunded_amount + amount)
    )
    if result.rowcount != 1:
        # The row lock makes this unreachable; if it ever is, run the whole request again
        # rather than let the ledger's refund stand without its record.
        raise Conflict(f"refund of {payment.id} raced past its lock")


async def refund_payment(
    conn: AsyncConnection,
    claim: Claim,
    *,
    payment_text: str,
    payment_id: uuid.UUID,
    amount: int | None,
    reason: RefundReason | None,
    principal: Principal,
) -> Reply:
    """Refund `amount` (default: all that is left) of a SUCCEEDED payment to its customer.
    Safe to run again for the same claim: the refund's id is the claim's resource id."""
    earlier = await get_refund(conn, claim.resource_id)
    if earlier is not None:
        return Reply(201, refund_view(earlier))
    payment = await get_payment(conn, payment_id, for_update=True)
    if payment is None:
        raise payment_not_found(payment_text)
    check_merchant(payment, principal, payment_text)
    amount = check_refund(payment, amount)
    transfer = Transfer(
        id=claim.resource_id,
        debit_account_id=payment.merchant_wallet_id,
        credit_account_id=payment.payer_wallet_id,
        amount=amount,
        currency=payment.currency,
        code=int(TransferCode.REFUND),
    )
    [outcome] = await create_transfers(conn, [transfer])
    if not succeeded(outcome.code):
        raise refund_refused(outcome.code)
    assert outcome.transfer is not None
    refund = Refund(
        id=transfer.id,
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        reason=reason.value if reason is not None else None,
        created_by=principal.user_id,
        created_at=outcome.transfer.timestamp,
    )
    await _add_refunded(conn, payment, amount)
    await conn.execute(
        insert(models.refunds).values(
            id=refund.id,
            payment_id=refund.payment_id,
            amount=refund.amount,
            currency=refund.currency,
            reason=refund.reason,
            created_by=refund.created_by,
            created_at=refund.created_at,
        )
    )
    refunded = replace(payment, refunded_amount=payment.refunded_amount + amount)
    await emit(conn, [payment_refunded(refunded, refund)])
    return Reply(201, refund_view(refund))
