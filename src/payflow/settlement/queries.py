"""Reading settlements: lists (a merchant's or everyone's) and one with its lines."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.ledger import Cursor
from payflow.pagination import newest_first
from payflow.settlement import models
from payflow.settlement.domain import Line, Settlement, SettlementStatus
from payflow.settlement.service import settlement_of


async def list_settlements(
    conn: AsyncConnection,
    *,
    merchant_id: uuid.UUID | None,
    status: SettlementStatus | None,
    limit: int,
    after: Cursor | None,
) -> tuple[list[Settlement], Cursor | None]:
    """A merchant's settlements (everyone's for `merchant_id=None`), newest first."""
    table = models.settlements
    query = select(table)
    if merchant_id is not None:
        query = query.where(table.c.merchant_id == merchant_id)
    if status is not None:
        query = query.where(table.c.status == status.value)
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return [settlement_of(row) for row in rows], cursor


async def lines_of(conn: AsyncConnection, settlement_id: uuid.UUID) -> list[Line]:
    """The settlement's lines, oldest payment first (at most `settlement_items_max`)."""
    table = models.lines
    rows = await conn.execute(
        select(table)
        .where(table.c.settlement_id == settlement_id)
        .order_by(table.c.succeeded_at, table.c.payment_id)
    )
    return [
        Line(
            payment_id=row.payment_id,
            amount=row.amount,
            refunded_amount=row.refunded_amount,
            fee_amount=row.fee_amount,
            net_amount=row.net_amount,
            succeeded_at=row.succeeded_at,
        )
        for row in rows
    ]
