"""Authorizations that expired: the ledger voids their pending transfers (the money is
the customer's again) and the payments become FAILED `authorization_expired`.

Run with the ledger's own expiry sweep (api/app.py). The void has the ledger's derived
expiry id, so whichever sweep gets there first voids it and the other finds it done.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.db import is_postgresql, run_in_transaction
from payflow.events.outbox import emit
from payflow.events.signals import outbox_committed
from payflow.ledger import Transfer, TransferFlags, TransferResult, create_transfers
from payflow.ledger.domain import expiry_transfer_id
from payflow.payments import models
from payflow.payments.domain import FailureReason, PaymentStatus
from payflow.payments.events import payment_failed
from payflow.payments.queries import payment_of
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)

# The void found its authorization expired (by this sweep or the ledger's).
_RELEASED = frozenset(
    {TransferResult.OK, TransferResult.EXISTS, TransferResult.PENDING_TRANSFER_EXPIRED}
)


async def fail_expired_authorizations(conn: AsyncConnection, *, now: int, limit: int) -> int:
    """Release up to `limit` authorizations expired by `now` and fail their payments;
    returns how many were due (a full batch means: call again)."""
    table = models.payments
    query = (
        select(table)
        .where(
            table.c.status == PaymentStatus.INITIATED.value,
            table.c.authorization_expires_at <= now,
        )
        .order_by(table.c.authorization_expires_at)
        .limit(limit)
    )
    if is_postgresql(conn):
        query = query.with_for_update(skip_locked=True)
    due = [payment_of(row) for row in await conn.execute(query)]
    if not due:
        return 0
    voids = [
        Transfer(
            id=expiry_transfer_id(p.id),
            pending_id=p.id,
            flags=int(TransferFlags.VOID_PENDING | TransferFlags.EXPIRY),
        )
        for p in due
    ]
    outcomes = await create_transfers(conn, voids, now_ns=now, allow_expiry=True)
    failed = []
    for payment, outcome in zip(due, outcomes, strict=True):
        if outcome.code not in _RELEASED:
            # Posted or voided yet still INITIATED here: the records disagree. Leave the
            # payment for an operator rather than guess which is right.
            log.error("payment %s: expiry void refused: %s", payment.id, outcome.code)
            continue
        failed.append(
            replace(
                payment,
                status=PaymentStatus.FAILED,
                failure_reason=FailureReason.AUTHORIZATION_EXPIRED.value,
                failed_at=now,
            )
        )
    if failed:
        await conn.execute(
            update(table)
            .where(
                table.c.id == bindparam("payment_id"),
                table.c.status == PaymentStatus.INITIATED.value,
            )
            .values(
                status=PaymentStatus.FAILED.value,
                failure_reason=FailureReason.AUTHORIZATION_EXPIRED.value,
                failed_at=now,
            ),
            [{"payment_id": p.id} for p in failed],
        )
        await emit(conn, [payment_failed(p) for p in failed])
    return len(due)


async def sweep_expired_authorizations(engine: AsyncEngine, *, batch_size: int) -> int:
    """Fail every payment whose authorization has expired, one bounded batch per
    transaction; returns how many."""
    total = 0
    while True:
        done = await run_in_transaction(
            engine,
            lambda conn: fail_expired_authorizations(conn, now=now_ns(), limit=batch_size),
        )
        if done:
            outbox_committed()
        total += done
        if done < batch_size:
            return total
