"""Payments' reads: one payment or refund, pages for the API, and what settlement asks.
Each takes the caller's connection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import is_postgresql
from payflow.ledger import Cursor, Page
from payflow.pagination import newest_first
from payflow.payments import models
from payflow.payments.domain import CaptureMethod, Payment, PaymentStatus, Refund

SETTLEABLE_LIMIT_MAX = 1000


def payment_of(row: Any) -> Payment:
    values = dict(row._mapping)
    values["status"] = PaymentStatus(values["status"])
    values["capture_method"] = CaptureMethod(values["capture_method"])
    return Payment(**values)


def refund_of(row: Any) -> Refund:
    return Refund(**row._mapping)


async def get_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, *, for_update: bool = False
) -> Payment | None:
    """The payment, or None. `for_update` locks its row until the transaction ends (on
    PostgreSQL; SQLite's one writer is serialized already)."""
    table = models.payments
    query = select(table).where(table.c.id == payment_id)
    if for_update and is_postgresql(conn):
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return payment_of(row) if row is not None else None


async def payment_by_key(
    conn: AsyncConnection, *, payer_user_id: uuid.UUID, idempotency_key: str
) -> Payment | None:
    """The payer's payment made under this idempotency key, if any."""
    table = models.payments
    row = (
        await conn.execute(
            select(table).where(
                table.c.payer_user_id == payer_user_id,
                table.c.idempotency_key == idempotency_key,
            )
        )
    ).first()
    return payment_of(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    """Whose payments a list shows (None: everybody's, for operators) and which."""

    merchant_id: uuid.UUID | None = None
    payer_user_id: uuid.UUID | None = None
    status: PaymentStatus | None = None
    created_gte_ns: int | None = None
    created_lt_ns: int | None = None


def _filtered(query: Select[Any], where: PaymentFilter) -> Select[Any]:
    table = models.payments
    if where.merchant_id is not None:
        query = query.where(table.c.merchant_id == where.merchant_id)
    if where.payer_user_id is not None:
        query = query.where(table.c.payer_user_id == where.payer_user_id)
    if where.status is not None:
        query = query.where(table.c.status == where.status.value)
    if where.created_gte_ns is not None:
        query = query.where(table.c.created_at >= where.created_gte_ns)
    if where.created_lt_ns is not None:
        query = query.where(table.c.created_at < where.created_lt_ns)
    return query


async def list_payments(
    conn: AsyncConnection, where: PaymentFilter, *, limit: int, after: Cursor | None
) -> Page[Payment]:
    """Payments newest first: one range scan of (merchant, status, created_at) or
    (payer, created_at)."""
    table = models.payments
    query = _filtered(select(table), where)
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return Page([payment_of(row) for row in rows], cursor)


async def get_refund(conn: AsyncConnection, refund_id: uuid.UUID) -> Refund | None:
    table = models.refunds
    row = (await conn.execute(select(table).where(table.c.id == refund_id))).first()
    return refund_of(row) if row is not None else None


async def list_refunds(
    conn: AsyncConnection, payment_id: uuid.UUID, *, limit: int, after: Cursor | None
) -> Page[Refund]:
    """A payment's refunds, newest first."""
    table = models.refunds
    query = select(table).where(table.c.payment_id == payment_id)
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return Page([refund_of(row) for row in rows], cursor)


@dataclass(frozen=True, slots=True)
class SettleablePayment:
    """A SUCCEEDED payment as settlement sees it: the merchant was paid `captured_amount`
    and has given back `refunded_amount` so far (refunds may still come)."""

    id: uuid.UUID
    merchant_id: uuid.UUID
    captured_amount: int
    refunded_amount: int
    currency: str
    created_at: int
    succeeded_at: int


async def list_settleable_payments(
    conn: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    currency: str,
    created_before_ns: int,
    after: uuid.UUID | None,
    limit: int,
) -> list[SettleablePayment]:
    """Up to `limit` of the merchant's SUCCEEDED payments in `currency` created before
    `created_before_ns`, by id (time-ordered) after `after`: pass the last id back for
    the next batch; fewer than `limit` means done. Settlement keeps its own record of
    which it settled."""
    assert 1 <= limit <= SETTLEABLE_LIMIT_MAX, limit
    table = models.payments
    query = (
        select(
            table.c.id,
            table.c.merchant_id,
            table.c.captured_amount,
            table.c.refunded_amount,
            table.c.currency,
            table.c.created_at,
            table.c.succeeded_at,
        )
        .where(
            table.c.merchant_id == merchant_id,
            table.c.status == PaymentStatus.SUCCEEDED.value,
            table.c.created_at < created_before_ns,
            table.c.currency == currency,
        )
        .order_by(table.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(table.c.id > after)
    return [SettleablePayment(**row._mapping) for row in await conn.execute(query)]
