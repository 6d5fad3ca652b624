"""The bank's credit use cases. Each takes the connection first and never commits: the
entrypoint (a request handler, the start-up recovery) owns the transaction."""

from __future__ import annotations

import json
import os
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.banksim import models
from payflow.banksim.accounts import destination, nostro
from payflow.banksim.domain import (
    REASON_BANK_DECLINED,
    REASON_EXPIRED,
    Credit,
    CreditRequest,
    CreditStatus,
    Discrepancy,
    StatementPolicy,
    decide,
    discrepancy_for,
    next_day,
    utc_day,
)
from payflow.errors import PayFlowError


async def receive_credit(
    conn: AsyncConnection, request: CreditRequest, *, now_ns: int
) -> tuple[Credit, bool]:
    """Record a credit as it arrives (processing, or rejected as expired); True if new.

    The same reference with the same request returns what was recorded; with a different
    request it is refused (`reference_reused`): a reference names one credit forever.
    """
    existing = await conn.execute(
        select(models.credits).where(models.credits.c.reference == request.reference)
    )
    row = existing.first()
    if row is not None:
        if row.request != request.canonical():
            raise PayFlowError(
                "reference_reused",
                f"reference {request.reference} was used for a different credit",
                http_status=409,
            )
        return _credit(row._mapping), False
    expired = now_ns // 1_000_000_000 > request.not_after
    values = {
        "reference": request.reference,
        "request": request.canonical(),
        "amount": request.amount,
        "currency": request.currency,
        "not_after": request.not_after,
        "status": "rejected" if expired else "processing",
        "reason": REASON_EXPIRED if expired else None,
        "bank_transaction_id": None,
        "received_at_ns": now_ns,
        "completed_at_ns": now_ns if expired else None,
    }
    await conn.execute(insert(models.credits).values(**values))
    return _credit(values), True


async def find_credit(conn: AsyncConnection, reference: str) -> Credit | None:
    """The credit the bank received under `reference`, if any."""
    result = await conn.execute(
        select(models.credits).where(models.credits.c.reference == reference)
    )
    row = result.first()
    return None if row is None else _credit(row._mapping)


async def processing_references(conn: AsyncConnection, *, limit: int) -> list[str]:
    """Credits received but not completed (e.g. the process stopped during a hold)."""
    rows = await conn.scalars(
        select(models.credits.c.reference)
        .where(models.credits.c.status == "processing")
        .order_by(models.credits.c.received_at_ns)
        .limit(limit)
    )
    return list(rows)


def _credit(row: Any) -> Credit:
    return Credit(
        reference=row["reference"],
        status=row["status"],
        reason=row["reason"],
        bank_transaction_id=row["bank_transaction_id"],
        amount=row["amount"],
        currency=row["currency"],
        received_at_ns=row["received_at_ns"],
        completed_at_ns=row["completed_at_ns"],
    )


async def complete_credit(
    conn: AsyncConnection,
    reference: str,
    *,
    declined: bool,
    policy: StatementPolicy,
    now_ns: int,
) -> Credit:
    """Process a received credit: reject it, or pay it from the nostro account and book
    its statement lines. A credit already completed is left as it is."""
    result = await conn.execute(
        select(models.credits).where(models.credits.c.reference == reference).with_for_update()
    )
    row = result.one()
    if row.status != "processing":
        return _credit(row._mapping)
    request = _request(row.request)
    nostro_account = await nostro(conn)
    status: CreditStatus
    reason: str | None
    if declined:
        status, reason = "rejected", REASON_BANK_DECLINED
    else:
        to = await destination(conn, request)
        status, reason = decide(request, destination=to, nostro_currency=nostro_account.currency)
    bank_transaction_id = new_bank_transaction_id() if status == "credited" else None
    await conn.execute(
        update(models.credits)
        .where(models.credits.c.reference == reference)
        .values(
            status=status,
            reason=reason,
            bank_transaction_id=bank_transaction_id,
            completed_at_ns=now_ns,
        )
    )
    if bank_transaction_id is not None:
        discrepancy = discrepancy_for(
            seed=policy.seed,
            reference=reference,
            amount=request.amount,
            fee=policy.fee_per_credit,
            missing_rate=policy.missing_line_rate,
            unexpected_rate=policy.unexpected_line_rate,
        )
        await _book(conn, request, nostro_account, bank_transaction_id, discrepancy, now_ns=now_ns)
    return _credit(
        {
            **row._mapping,
            "status": status,
            "reason": reason,
            "bank_transaction_id": bank_transaction_id,
            "completed_at_ns": now_ns,
        }
    )


def new_bank_transaction_id() -> str:
    """`SB` and 14 random hex digits: 16 characters, the most MT940's bank reference holds."""
    return "SB" + os.urandom(7).hex().upper()


def _request(text: str) -> CreditRequest:
    body = json.loads(text)
    address = body["destination"]
    return CreditRequest(
        reference=body["reference"],
        amount=body["amount"],
        currency=body["currency"],
        vpa=address.get("vpa"),
        bank_code=address.get("bank_code"),
        account_number=address.get("account_number"),
        not_after=body["not_after"],
        narrative=body["narrative"],
    )


async def _book(
    conn: AsyncConnection,
    request: CreditRequest,
    nostro: Any,
    bank_transaction_id: str,
    discrepancy: Discrepancy,
    *,
    now_ns: int,
) -> None:
    # A line "missing" from its day's statement is booked a day late: the money left the
    # account (balances stay consistent) but the statement of the day shows it only later.
    value_on = utc_day(now_ns)
    booked_on = next_day(value_on) if discrepancy.booked_late else value_on
    common = {
        "account_id": nostro.id,
        "value_on": value_on.isoformat(),
        "direction": "D",
        "currency": nostro.currency,
        "booked_at_ns": now_ns,
    }
    lines = [
        {
            **common,
            "booked_on": booked_on.isoformat(),
            "kind": "payment",
            "amount": request.amount,
            "reference": request.reference,
            "bank_transaction_id": bank_transaction_id,
            "narrative": request.narrative or f"CREDIT {request.reference}",
        },
    ]
    if discrepancy.fee > 0:
        lines.append(
            {
                **common,
                "booked_on": booked_on.isoformat(),
                "kind": "fee",
                "amount": discrepancy.fee,
                "reference": request.reference,
                "bank_transaction_id": new_bank_transaction_id(),
                "narrative": f"FEE {request.reference}",
            }
        )
    if discrepancy.unexpected_amount > 0:
        lines.append(
            {
                **common,
                "booked_on": value_on.isoformat(),
                "kind": "unexpected",
                "amount": discrepancy.unexpected_amount,
                "reference": "UNX" + bank_transaction_id[2:],
                "bank_transaction_id": new_bank_transaction_id(),
                "narrative": "DEBIT NOT REQUESTED BY ACCOUNT HOLDER",
            }
        )
    await conn.execute(insert(models.entries), lines)
