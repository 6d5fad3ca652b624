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


def _with_users(
    data: dict[str, Any], sides: dict[str, uuid.UUID | None], wallets: dict[uuid.UUID, Wallet]
) -> dict[str, Any]:
    """`data` with each side's wallet reference (`sides`: the wallet id behind it) given
    the `user_id` of a wallet in `wallets`; the references are copied, not changed."""
    for side, wallet_id in sides.items():
        ref = data.get(side)
        wallet = wallets.get(wallet_id) if wallet_id is not None else None
        if isinstance(ref, dict) and wallet is not None:
            data[side] = {**ref, "user_id": format_public_id("usr", wallet.user_id)}
    return data


def transfer_completed(
    record: TransferRecord,
    wallets: dict[uuid.UUID, Wallet],
    *,
    view: dict[str, Any] | None = None,
) -> Event:
    """Money has moved: a P2P payment, a top-up or a hold's capture. `view`, when the
    caller has it, is `transfer_view(record, wallets)` (it is copied, not changed)."""
    data = dict(view) if view is not None else transfer_view(record, wallets)
    data = _with_users(data, {"from": record.from_wallet_id, "to": record.to_wallet_id}, wallets)
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
    sides = {"wallet": hold.wallet_id, "payee": hold.payee_wallet_id}
    data = _with_users(hold_view(hold, wallets, now_ns=at), sides, wallets)
    return Event(
        id=derived_event_id(hold.id, event_type),
        type=event_type,
        aggregate_type="hold",
        aggregate_id=data["id"],
        occurred_at=at,
        data=data,
    )
