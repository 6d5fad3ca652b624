"""Transfers' use cases: plans for money-moving requests (run by the API's micro-batcher)
and reads. Plans read and check; the ledger batch commits the money with the records.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy import Update, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.replies import Completion, Reply
from payflow.errors import PayFlowError
from payflow.events.outbox import outbox_row
from payflow.ledger import Cursor, Page, Transfer, TransferFlags, TransferOutcome
from payflow.pagination import newest_first
from payflow.timestamps import now_ns
from payflow.transfers import models
from payflow.transfers.domain import SUCCEEDED, Hold, TransferRecord, ledger_error, succeeded
from payflow.transfers.events import (
    HOLD_CAPTURED,
    HOLD_CREATED,
    HOLD_RELEASED,
    hold_event,
    transfer_completed,
)
from payflow.transfers.views import hold_view, transfer_view
from payflow.wallets.domain import SystemAccount, TransferCode, Wallet
from payflow.wallets.service import system_account_id

_DERIVED = uuid.UUID("0b7f3a4e-2f6d-4c1a-8f55-6a3e9d2c7b01")


def _derived_id(resource_id: uuid.UUID, purpose: str) -> uuid.UUID:
    """A second ledger id for one request (e.g. the post of a capture), stable on retry."""
    return uuid.uuid5(_DERIVED, f"{purpose}:{resource_id}")


def _record_row(record: TransferRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "kind": record.kind,
        "status": record.status,
        "from_wallet_id": record.from_wallet_id,
        "to_wallet_id": record.to_wallet_id,
        "amount": record.amount,
        "currency": record.currency,
        "note": record.note,
        "hold_id": record.hold_id,
        "initiated_by": record.initiated_by,
        "created_at": record.created_at,
    }


def plan_move(
    claim: Claim,
    *,
    kind: str,
    code: TransferCode,
    debit: uuid.UUID,
    credit: uuid.UUID,
    amount: int,
    currency: str,
    note: str | None,
    initiated_by: uuid.UUID,
    wallets: dict[uuid.UUID, Wallet],
) -> LedgerWork:
    """A one-transfer money move (P2P or top-up) recorded as a transfer on success."""
    transfer = Transfer(
        id=claim.resource_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=currency,
        code=int(code),
    )

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        [outcome] = outcomes
        if not succeeded(outcome.code):
            return Completion(Reply.error(ledger_error(outcome.code)))
        assert outcome.transfer is not None
        record = TransferRecord(
            id=transfer.id,
            kind=kind,
            status=SUCCEEDED,
            from_wallet_id=debit if debit in wallets else None,
            to_wallet_id=credit if credit in wallets else None,
            amount=amount,
            currency=currency,
            note=note,
            hold_id=None,
            initiated_by=initiated_by,
            created_at=outcome.transfer.timestamp,
        )
        view = transfer_view(record, wallets)
        return Completion(
            Reply(201, view),
            inserts=[
                (models.transfers, _record_row(record)),
                outbox_row(transfer_completed(record, wallets, view=view)),
            ],
        )

    return LedgerWork(transfers=(transfer,), complete=complete, claim=claim)


def plan_p2p(
    claim: Claim,
    *,
    sender: Wallet,
    recipient: Wallet,
    amount: int,
    note: str | None,
    initiated_by: uuid.UUID,
) -> LedgerWork:
    if recipient.id == sender.id:
        raise PayFlowError("recipient_is_sender", "you cannot pay yourself", http_status=422)
    if recipient.currency != sender.currency:
        raise PayFlowError(
            "currency_mismatch", "the wallets hold different currencies", http_status=422
        )
    return plan_move(
        claim,
        kind="p2p",
        code=TransferCode.P2P,
        debit=sender.id,
        credit=recipient.id,
        amount=amount,
        currency=sender.currency,
        note=note,
        initiated_by=initiated_by,
        wallets={sender.id: sender, recipient.id: recipient},
    )


def plan_topup(
    claim: Claim, *, wallet: Wallet, amount: int, topup_amount_max: int, initiated_by: uuid.UUID
) -> LedgerWork:
    if amount > topup_amount_max:
        raise PayFlowError(
            "topup_too_large", f"a single top-up is at most {topup_amount_max}", http_status=422
        )
    return plan_move(
        claim,
        kind="topup",
        code=TransferCode.TOPUP,
        debit=system_account_id(SystemAccount.BANK_CLEARING, wallet.currency),
        credit=wallet.id,
        amount=amount,
        currency=wallet.currency,
        note=None,
        initiated_by=initiated_by,
        wallets={wallet.id: wallet},
    )


def _hold_row(hold: Hold) -> dict[str, object]:
    return {
        "id": hold.id,
        "wallet_id": hold.wallet_id,
        "amount": hold.amount,
        "currency": hold.currency,
        "note": hold.note,
        "status": hold.status,
        "captured_amount": 0,
        "payee_wallet_id": None,
        "expires_at": hold.expires_at,
        "created_by": hold.created_by,
        "created_at": hold.created_at,
        "resolved_at": None,
    }


def plan_hold(
    claim: Claim,
    *,
    wallet: Wallet,
    amount: int,
    expires_in_s: int | None,
    note: str | None,
    created_by: uuid.UUID,
) -> LedgerWork:
    """A pending transfer from the wallet into the holds account, optionally expiring."""
    transfer = Transfer(
        id=claim.resource_id,
        debit_account_id=wallet.id,
        credit_account_id=system_account_id(SystemAccount.HOLDS, wallet.currency),
        amount=amount,
        currency=wallet.currency,
        code=int(TransferCode.HOLD),
        flags=int(TransferFlags.PENDING),
        timeout_s=expires_in_s or 0,
    )

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        [outcome] = outcomes
        if not succeeded(outcome.code):
            return Completion(Reply.error(ledger_error(outcome.code)))
        assert outcome.transfer is not None
        created_at = outcome.transfer.timestamp
        hold = Hold(
            id=transfer.id,
            wallet_id=wallet.id,
            amount=amount,
            currency=wallet.currency,
            note=note,
            status="held",
            captured_amount=0,
            payee_wallet_id=None,
            expires_at=created_at + expires_in_s * 1_000_000_000 if expires_in_s else None,
            created_by=created_by,
            created_at=created_at,
            resolved_at=None,
        )
        return Completion(
            Reply(201, hold_view(hold, {wallet.id: wallet}, now_ns=created_at)),
            inserts=[
                (models.holds, _hold_row(hold)),
                outbox_row(hold_event(HOLD_CREATED, hold, {wallet.id: wallet}, at=created_at)),
            ],
        )

    return LedgerWork(transfers=(transfer,), complete=complete, claim=claim)


def _check_resolvable(hold: Hold) -> None:
    status = hold.status_at(now_ns())
    if status == "expired":
        raise PayFlowError("hold_expired", "the hold has expired", http_status=409)
    if status != "held":
        raise PayFlowError("hold_not_held", f"the hold is already {status}", http_status=409)


def plan_capture(
    claim: Claim,
    *,
    hold: Hold,
    wallets: dict[uuid.UUID, Wallet],
    payee: Wallet,
    amount: int | None,
    initiated_by: uuid.UUID,
) -> LedgerWork:
    """Post (part of) the hold and pay the payee from the holds account: one linked chain."""
    _check_resolvable(hold)
    if payee.currency != hold.currency:
        raise PayFlowError(
            "currency_mismatch", "the payee's wallet holds another currency", http_status=422
        )
    if payee.id == hold.wallet_id:
        raise PayFlowError(
            "recipient_is_sender", "capture to another wallet, or release", http_status=422
        )
    amount = hold.amount if amount is None else amount
    if amount > hold.amount:
        raise PayFlowError("capture_exceeds_hold", f"the hold is {hold.amount}", http_status=422)
    holds_account = system_account_id(SystemAccount.HOLDS, hold.currency)
    post = Transfer(
        id=_derived_id(claim.resource_id, "post"),
        pending_id=hold.id,
        amount=amount,
        flags=int(TransferFlags.POST_PENDING | TransferFlags.LINKED),
    )
    pay = Transfer(
        id=claim.resource_id,
        debit_account_id=holds_account,
        credit_account_id=payee.id,
        amount=amount,
        currency=hold.currency,
        code=int(TransferCode.CAPTURE),
    )
    wallets = {**wallets, payee.id: payee}

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        failed = [o.code for o in outcomes if not succeeded(o.code)]
        if failed:
            first = next(c for c in failed if c != "linked_event_failed")
            return Completion(Reply.error(ledger_error(first)))
        assert outcomes[1].transfer is not None
        at = outcomes[1].transfer.timestamp
        captured = replace(
            hold,
            status="captured",
            captured_amount=amount,
            payee_wallet_id=payee.id,
            resolved_at=at,
        )
        record = TransferRecord(
            id=pay.id,
            kind="capture",
            status=SUCCEEDED,
            from_wallet_id=hold.wallet_id,
            to_wallet_id=payee.id,
            amount=amount,
            currency=hold.currency,
            note=hold.note,
            hold_id=hold.id,
            initiated_by=initiated_by,
            created_at=at,
        )
        body = hold_view(captured, wallets, now_ns=at)
        body["transfer"] = transfer_view(record, wallets)
        return Completion(
            Reply(200, body),
            inserts=[
                (models.transfers, _record_row(record)),
                outbox_row(hold_event(HOLD_CAPTURED, captured, wallets, at=at)),
                outbox_row(transfer_completed(record, wallets)),
            ],
            statements=[_resolve_statement(captured)],
        )

    return LedgerWork(transfers=(post, pay), complete=complete, claim=claim)


def plan_release(claim: Claim, *, hold: Hold, wallets: dict[uuid.UUID, Wallet]) -> LedgerWork:
    """Void the hold: the money is available to the wallet again."""
    _check_resolvable(hold)
    void = Transfer(id=claim.resource_id, pending_id=hold.id, flags=int(TransferFlags.VOID_PENDING))

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        [outcome] = outcomes
        if not succeeded(outcome.code):
            return Completion(Reply.error(ledger_error(outcome.code)))
        assert outcome.transfer is not None
        at = outcome.transfer.timestamp
        released = replace(hold, status="released", resolved_at=at)
        return Completion(
            Reply(200, hold_view(released, wallets, now_ns=at)),
            inserts=[outbox_row(hold_event(HOLD_RELEASED, released, wallets, at=at))],
            statements=[_resolve_statement(released)],
        )

    return LedgerWork(transfers=(void,), complete=complete, claim=claim)


def _resolve_statement(hold: Hold) -> Update:
    table = models.holds
    return (
        update(table)
        .where(table.c.id == hold.id, table.c.status == "held")
        .values(
            status=hold.status,
            captured_amount=hold.captured_amount,
            payee_wallet_id=hold.payee_wallet_id,
            resolved_at=hold.resolved_at,
        )
    )


def _record(row: object) -> TransferRecord:
    return TransferRecord(**row._mapping)  # type: ignore[attr-defined]


def _hold(row: object) -> Hold:
    return Hold(**row._mapping)  # type: ignore[attr-defined]


async def get_transfer(conn: AsyncConnection, transfer_id: uuid.UUID) -> TransferRecord | None:
    row = (
        await conn.execute(select(models.transfers).where(models.transfers.c.id == transfer_id))
    ).first()
    return _record(row) if row is not None else None


async def list_transfers(
    conn: AsyncConnection, wallet_ids: list[uuid.UUID], *, limit: int, after: Cursor | None
) -> Page[TransferRecord]:
    """Transfers from or to any of `wallet_ids`, newest first."""
    table = models.transfers
    query = select(table).where(
        or_(table.c.from_wallet_id.in_(wallet_ids), table.c.to_wallet_id.in_(wallet_ids))
    )
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return Page([_record(row) for row in rows], cursor)


async def get_hold(conn: AsyncConnection, hold_id: uuid.UUID) -> Hold | None:
    row = (await conn.execute(select(models.holds).where(models.holds.c.id == hold_id))).first()
    return _hold(row) if row is not None else None
