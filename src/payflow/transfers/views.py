"""How transfers and holds look on the wire (JSON-ready dicts, public ids)."""

from __future__ import annotations

import uuid
from typing import Any

from payflow.ids import format_public_id
from payflow.timestamps import to_rfc3339
from payflow.transfers.domain import Hold, TransferRecord
from payflow.wallets.domain import Wallet


def _wallet_ref(
    wallet_id: uuid.UUID | None, wallets: dict[uuid.UUID, Wallet]
) -> dict[str, Any] | None:
    if wallet_id is None:
        return None
    wallet = wallets.get(wallet_id)
    return {
        "wallet_id": format_public_id("wal", wallet_id),
        "address": wallet.address if wallet is not None else None,
    }


def transfer_view(record: TransferRecord, wallets: dict[uuid.UUID, Wallet]) -> dict[str, Any]:
    return {
        "id": format_public_id("txn", record.id),
        "object": "transfer",
        "kind": record.kind,
        "status": record.status,
        "amount": record.amount,
        "currency": record.currency,
        "from": _wallet_ref(record.from_wallet_id, wallets),
        "to": _wallet_ref(record.to_wallet_id, wallets),
        "note": record.note,
        "hold_id": format_public_id("hold", record.hold_id) if record.hold_id else None,
        "created_at": to_rfc3339(record.created_at),
    }


def hold_view(hold: Hold, wallets: dict[uuid.UUID, Wallet], *, now_ns: int) -> dict[str, Any]:
    return {
        "id": format_public_id("hold", hold.id),
        "object": "hold",
        "status": hold.status_at(now_ns),
        "amount": hold.amount,
        "captured_amount": hold.captured_amount,
        "currency": hold.currency,
        "wallet": _wallet_ref(hold.wallet_id, wallets),
        "payee": _wallet_ref(hold.payee_wallet_id, wallets),
        "note": hold.note,
        "expires_at": to_rfc3339(hold.expires_at) if hold.expires_at is not None else None,
        "created_at": to_rfc3339(hold.created_at),
        "resolved_at": to_rfc3339(hold.resolved_at) if hold.resolved_at is not None else None,
    }
