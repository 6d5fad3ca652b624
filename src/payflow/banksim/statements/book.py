"""The nostro account's book, read as one day's statement."""

from __future__ import annotations

from datetime import date

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.banksim import models
from payflow.banksim.accounts import nostro
from payflow.banksim.domain import Statement, StatementLine, signed


async def load_statement(conn: AsyncConnection, *, day: date) -> Statement:
    """The nostro account's lines booked on `day`, between its opening and closing
    balances (the opening balance is the account's funding plus every earlier line)."""
    account = await nostro(conn)
    table = models.entries
    signed_amount = func.sum(
        case((table.c.direction == "C", table.c.amount), else_=-table.c.amount)
    )
    before = await conn.scalar(
        select(signed_amount).where(
            table.c.account_id == account.id, table.c.booked_on < day.isoformat()
        )
    )
    rows = await conn.execute(
        select(table)
        .where(table.c.account_id == account.id, table.c.booked_on == day.isoformat())
        .order_by(table.c.id)
    )
    lines = tuple(
        StatementLine(
            booked_on=date.fromisoformat(row.booked_on),
            value_on=date.fromisoformat(row.value_on),
            kind=row.kind,
            direction=row.direction,
            amount=row.amount,
            currency=row.currency,
            reference=row.reference,
            bank_transaction_id=row.bank_transaction_id,
            narrative=row.narrative,
        )
        for row in rows
    )
    # PostgreSQL sums bigints as numeric: back to int.
    opening = account.opening_balance + int(before or 0)
    closing = opening + sum(signed(line.direction, line.amount) for line in lines)
    return Statement(
        day=day,
        bank_code=account.bank_code,
        account_number=account.account_number,
        account_name=account.name,
        currency=account.currency,
        opening_balance=opening,
        closing_balance=closing,
        lines=lines,
    )
