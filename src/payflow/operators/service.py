"""Operators' use cases: audited adjustments and the action log."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.replies import Completion, Reply
from payflow.events.outbox import outbox_row
from payflow.ids import format_public_id, uuid7
from payflow.ledger import Cursor, Page, Transfer, TransferOutcome
from payflow.operators import models
from payflow.operators.events import adjustment_posted
from payflow.pagination import newest_first
from payflow.timestamps import now_ns, to_rfc3339
from payflow.transfers.domain import ledger_error, succeeded
from payflow.wallets.domain import SystemAccount, TransferCode, Wallet
from payflow.wallets.service import system_account_id


def log_row(
    *, actor_id: uuid.UUID, action: str, target: str | None, details: dict[str, Any], at: int
) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "actor_id": actor_id,
        "action": action,
        "target": target,
        "details": details,
        "created_at": at,
    }


async def log_action(
    conn: AsyncConnection,
    *,
    actor_id: uuid.UUID,
    action: str,
    target: str | None,
    details: dict[str, Any],
) -> None:
    await conn.execute(
        insert(models.audit_log).values(
            **log_row(actor_id=actor_id, action=action, target=target, details=details, at=now_ns())
        )
    )


def plan_adjustment(
    claim: Claim,
    *,
    wallet: Wallet,
    direction: str,
    amount: int,
    reason: str,
    actor_id: uuid.UUID,
) -> LedgerWork:
    """Credit or debit a wallet against the adjustments account, with the reason logged in
    the same transaction."""
    other = system_account_id(SystemAccount.ADJUSTMENTS, wallet.currency)
    debit, credit = (other, wallet.id) if direction == "credit" else (wallet.id, other)
    transfer = Transfer(
        id=claim.resource_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=wallet.currency,
        code=int(TransferCode.ADJUSTMENT),
    )

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        [outcome] = outcomes
        if not succeeded(outcome.code):
            return Completion(Reply.error(ledger_error(outcome.code)))
        assert outcome.transfer is not None
        at = outcome.transfer.timestamp
        body = {
            "id": format_public_id("txn", transfer.id),
            "object": "adjustment",
            "wallet_id": format_public_id("wal", wallet.id),
            "direction": direction,
            "amount": amount,
            "currency": wallet.currency,
            "reason": reason,
            "created_at": to_rfc3339(at),
        }
        row = log_row(
            actor_id=actor_id,
            action="adjustment",
            target=format_public_id("wal", wallet.id),
            details=body,
            at=at,
        )
        event = adjustment_posted(transfer.id, body, user_id=wallet.user_id, at=at)
        return Completion(Reply(201, body), inserts=[(models.audit_log, row), outbox_row(event)])

    return LedgerWork(transfers=(transfer,), complete=complete, claim=claim)


async def list_actions(
    conn: AsyncConnection, *, limit: int, after: Cursor | None
) -> Page[dict[str, Any]]:
    """Operator actions, newest first."""
    table = models.audit_log
    rows, cursor = await newest_first(conn, table, select(table), limit=limit, after=after)
    items = [
        {
            "id": format_public_id("act", row.id),
            "actor_id": format_public_id("usr", row.actor_id),
            "action": row.action,
            "target": row.target,
            "details": row.details,
            "created_at": to_rfc3339(row.created_at),
        }
        for row in rows
    ]
    return Page(items, cursor)
