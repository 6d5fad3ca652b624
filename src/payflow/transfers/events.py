"""What transfers and holds tell the rest of PayFlow (docs/events.md).

Each event's data is the object as the API shows it, with each party's `user_id` added so
consumers (notifications, rewards) know whom it concerns without another lookup.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from payflow.events.domain import Event, derived_event_id
from payflow.ids import format_public_id
from payflow.transfers.domain import Hold, TransferRecord
from payflow.transfers.views import hold_view, transfer_view
from payflow.wallets.domain import Wallet

TRANSFER_COMPLETED: Final = "transfer.completed"
HOLD_CREATED: Final = "hold.created"
HOLD_CAPTURED: Final = "hold.captured"
HOLD_RELEASED: Final = "hold.released"


def _with_users(data: dict[str, Any], wallets: dict[uuid.UUID, Wallet]) -> dict[str, Any]:
    by_public_id = {format_public_id("wal", w.id): w for w in wallets.values()}
    for side in ("from", "to", "wallet", "payee"):
        ref = data.get(side)
        if isinstance(ref, dict) and ref.get("wallet_id") in by_public_id:
            ref["user_id"] = format_public_id("usr", by_public_id[ref["wallet_id"]].user_id)
    return data


def transfer_completed(
    record: TransferRecord,
    wallets: dict[uuid.UUID, Wallet],
    *,
    view: dict[str, Any] | None = None,
) -> Event:
    """Money has moved: a P2P payment, a top-up or a hold's capture. `view`, when the
    caller has it, is `transfer_view(record, wallets)` (it is copied, not changed)."""
    if view is None:
        data = transfer_view(record, wallets)
    else:
        data = {k: dict(v) if isinstance(v, dict) else v for k, v in view.items()}
    data = _with_users(data, wallets)
    return Event(
        id=derived_event_id(record.id, TRANSFER_COMPLETED),
        type=TRANSFER_COMPLETED,
        aggregate_type="transfer",
        aggregate_id=data["id"],
        occurred_at=record.created_at,
        data=data,
    )


def hold_event(event_type: str, hold: Hold, wallets: dict[uuid.UUID, Wallet], *, at: int) -> Event:
    """`hold.created`, `hold.captured` or `hold.released`, with the hold as it now is."""
    assert event_type in (HOLD_CREATED, HOLD_CAPTURED, HOLD_RELEASED), event_type
    data = _with_users(hold_view(hold, wallets, now_ns=at), wallets)
    return Event(
        id=derived_event_id(hold.id, event_type),
        type=event_type,
        aggregate_type="hold",
        aggregate_id=data["id"],
        occurred_at=at,
        data=data,
    )
