"""Payouts' use cases: start a saga and move it one step at a time.

Every step is a conditional update (`WHERE step = <the step we read>`) plus the next
event, in the caller's transaction: a duplicated or stale event, a retried transaction
or a sweeper racing a worker finds the step already taken and does nothing. Ledger
transfer ids are derived from the payout, so the money moves once whatever runs twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import is_postgresql
from payflow.events.outbox import emit
from payflow.ledger import Transfer, TransferFlags, create_transfers
from payflow.payouts import models
from payflow.payouts.domain import (
    Destination,
    Payout,
    Step,
    can_move,
    debit_transfer_id,
    post_transfer_id,
    void_transfer_id,
)
from payflow.payouts.events import step_event
from payflow.timestamps import now_ns
from payflow.transfers.domain import ledger_error, succeeded
from payflow.wallets.domain import SystemAccount, TransferCode, Wallet
from payflow.wallets.service import ensure_system_accounts, system_account_id

table = models.payouts


def payout_of(row: Any) -> Payout:
    """A payout from a result row."""
    return _payout(row._mapping)


def _payout(values: Mapping[str, Any]) -> Payout:
    fields = {k: v for k, v in values.items() if k not in ("credited_at", "refunded_at")}
    fields["destination"] = Destination.from_json(values["destination"])
    fields["step"] = Step(values["step"])
    return Payout(**fields)


async def get_payout(
    conn: AsyncConnection, payout_id: uuid.UUID, *, for_update: bool = False
) -> Payout | None:
    query = select(table).where(table.c.id == payout_id)
    if for_update and is_postgresql(conn):
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else payout_of(row)


async def get_payout_by_source(conn: AsyncConnection, source: str, source_id: str) -> Payout | None:
    query = select(table).where(table.c.source == source, table.c.source_id == source_id)
    row = (await conn.execute(query)).first()
    return None if row is None else payout_of(row)


async def initiate(
    conn: AsyncConnection,
    *,
    payout_id: uuid.UUID,
    wallet: Wallet,
    amount: int,
    destination: Destination,
    description: str | None,
    deadline_s: float,
    source: str = "api",
    source_id: str | None = None,
) -> Payout:
    """Record a new payout at TRANSACTION_INITIATED and write that event.

    Nothing moves yet: the `payouts` consumer debits the wallet when it hears the event.
    """
    assert amount > 0, amount
    now = now_ns()
    # Databases created before payouts existed lack the transit account of a currency.
    await ensure_system_accounts(conn, wallet.currency)
    values = {
        "id": payout_id,
        "user_id": wallet.user_id,
        "wallet_id": wallet.id,
        "amount": amount,
        "currency": wallet.currency,
        "destination": destination.to_json(),
        "description": description,
        "source": source,
        "source_id": source_id,
        "step": Step.INITIATED.value,
        "failure_reason": None,
        "bank_transaction_id": None,
        "not_after": (now + int(deadline_s * 1e9)) // 1_000_000_000,
        "attempts": 0,
        "next_attempt_at": None,
        "inquire": False,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(insert(table).values(values))
    payout = _payout(values)
    await _record_step(conn, payout, at=now)
    await emit(conn, [step_event(payout, Step.INITIATED, at=now)])
    return payout


async def _record_step(
    conn: AsyncConnection, payout: Payout, *, at: int, detail: str | None = None
) -> None:
    await conn.execute(
        insert(models.payout_steps).values(
            payout_id=payout.id, step=payout.step.value, at=at, detail=detail
        )
    )


async def move(
    conn: AsyncConnection,
    payout: Payout,
    to: Step,
    *,
    detail: str | None = None,
    **values: Any,
) -> Payout | None:
    """Take `payout` from the step it was read at to `to`; None if another got there first.

    Writes the timeline entry and, for every step but CREDIT_DUE, the step's event.
    """
    assert can_move(payout.step, to), (payout.step, to)
    now = now_ns()
    result = await conn.execute(
        update(table)
        .where(table.c.id == payout.id, table.c.step == payout.step.value)
        .values(step=to.value, updated_at=now, **values)
        .returning(*table.c)
    )
    row = result.first()
    if row is None:
        return None
    moved = payout_of(row)
    await _record_step(conn, moved, at=now, detail=detail)
    if to is not Step.CREDIT_DUE:
        await emit(conn, [step_event(moved, to, at=now)])
    return moved


async def debit(conn: AsyncConnection, payout: Payout) -> Payout | None:
    """TRANSACTION_INITIATED → DEBIT_SUCCESS (pending transfer into transit) or DEBIT_FAILED."""
    transit = system_account_id(SystemAccount.PAYOUTS_TRANSIT, payout.currency)
    [outcome] = await create_transfers(
        conn,
        [
            Transfer(
                id=debit_transfer_id(payout.id),
                debit_account_id=payout.wallet_id,
                credit_account_id=transit,
                amount=payout.amount,
                currency=payout.currency,
                code=int(TransferCode.PAYOUT),
                flags=int(TransferFlags.PENDING),
            )
        ],
    )
    if succeeded(outcome.code):
        return await move(conn, payout, Step.DEBITED)
    reason = ledger_error(outcome.code).code
    return await move(conn, payout, Step.DEBIT_FAILED, failure_reason=reason, detail=reason)


async def _resolve_debit(conn: AsyncConnection, payout: Payout, *, post: bool) -> None:
    flags = TransferFlags.POST_PENDING if post else TransferFlags.VOID_PENDING
    transfer_id = post_transfer_id(payout.id) if post else void_transfer_id(payout.id)
    [outcome] = await create_transfers(
        conn,
        [Transfer(id=transfer_id, pending_id=debit_transfer_id(payout.id), flags=int(flags))],
    )
    # The pending debit has no timeout and only this saga resolves it, once: anything
    # but ok/exists is a broken invariant, and the transaction must not commit.
    assert succeeded(outcome.code), (payout.id, outcome.code)


async def advance(conn: AsyncConnection, payout: Payout) -> Payout | None:
    """Take the step that follows `payout.step`, if it needs no bank call.

    The consumer calls this when it hears a step's event; the sweeper calls it for sagas
    whose event has not been handled in time. CREDIT_DUE waits for the bank caller.
    """
    match payout.step:
        case Step.INITIATED:
            return await debit(conn, payout)
        case Step.DEBITED:
            return await move(conn, payout, Step.CREDIT_DUE, next_attempt_at=now_ns())
        case Step.DEBIT_FAILED:
            return await move(conn, payout, Step.FAILED)
        case Step.CREDITED:
            await _resolve_debit(conn, payout, post=True)
            return await move(conn, payout, Step.COMPLETED, credited_at=now_ns())
        case Step.CREDIT_FAILED:
            return await move(conn, payout, Step.REFUND_REQUESTED)
        case Step.REFUND_REQUESTED:
            await _resolve_debit(conn, payout, post=False)
            return await move(conn, payout, Step.REFUNDED, refunded_at=now_ns())
        case Step.REFUNDED:
            return await move(conn, payout, Step.FAILED)
        case _:
            return None
