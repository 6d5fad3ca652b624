"""A wallet's statement: every ledger movement with the running balance after it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.ids import format_public_id
from payflow.ledger import Cursor, TransferFlags, get_account_history, lookup_transfers
from payflow.ledger.domain import Transfer
from payflow.timestamps import to_rfc3339
from payflow.wallets.domain import SystemAccount, TransferCode, Wallet
from payflow.wallets.service import get_wallets, system_account_id

_KINDS = {
    TransferCode.P2P: "p2p",
    TransferCode.TOPUP: "topup",
    TransferCode.HOLD: "hold",
    TransferCode.CAPTURE: "capture",
    TransferCode.ADJUSTMENT: "adjustment",
    TransferCode.CASHBACK: "cashback",
    TransferCode.CLAWBACK: "clawback",
    TransferCode.POOL_FUNDING: "pool_funding",
}


def _kind(transfer: Transfer) -> str:
    if transfer.flags & TransferFlags.POST_PENDING:
        return "hold_captured"
    if transfer.flags & TransferFlags.EXPIRY:
        return "hold_expired"
    if transfer.flags & TransferFlags.VOID_PENDING:
        return "hold_released"
    return _KINDS.get(TransferCode(transfer.code), "other") if transfer.code in _KINDS else "other"


async def statement(
    conn: AsyncConnection, wallet: Wallet, *, limit: int, after: Cursor | None
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Entries oldest first, each with the wallet's balance right after it."""
    history = await get_account_history(conn, wallet.id, limit=limit, after=after)
    transfers = {
        t.id: t for t in await lookup_transfers(conn, [s.transfer_id for s in history.items])
    }
    system_names = {system_account_id(name, wallet.currency): name.value for name in SystemAccount}
    others = {
        (t.credit_account_id if t.debit_account_id == wallet.id else t.debit_account_id)
        for t in transfers.values()
    }
    wallets = await get_wallets(
        conn, [i for i in others if i is not None and i not in system_names]
    )
    entries = []
    for snapshot in history.items:
        transfer = transfers[snapshot.transfer_id]
        debit = transfer.debit_account_id == wallet.id
        other = transfer.credit_account_id if debit else transfer.debit_account_id
        assert other is not None
        counterparty = wallets[other].address if other in wallets else system_names.get(other)
        posted = snapshot.credits_posted - snapshot.debits_posted
        entries.append(
            {
                "transfer_id": format_public_id("txn", transfer.id),
                "kind": _kind(transfer),
                # A released or expired hold gives the money back: a credit to what the
                # wallet can spend, though the ledger books it on the hold's debit side.
                "direction": "debit"
                if debit and not transfer.flags & TransferFlags.VOID_PENDING
                else "credit",
                "amount": transfer.amount,
                "counterparty": counterparty,
                "balance": {
                    "posted": posted,
                    "pending": snapshot.debits_pending,
                    "available": posted - snapshot.debits_pending,
                },
                "created_at": to_rfc3339(snapshot.timestamp),
            }
        )
    return entries, history.next_cursor
