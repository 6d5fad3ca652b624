"""What wallets tell the rest of PayFlow (docs/events.md)."""

from __future__ import annotations

from typing import Final

from payflow.events.domain import Event, derived_event_id
from payflow.ids import format_public_id
from payflow.wallets.domain import Wallet

WALLET_OPENED: Final = "wallet.opened"


def wallet_opened(wallet: Wallet) -> Event:
    public_id = format_public_id("wal", wallet.id)
    return Event(
        id=derived_event_id(wallet.id, WALLET_OPENED),
        type=WALLET_OPENED,
        aggregate_type="wallet",
        aggregate_id=public_id,
        occurred_at=wallet.created_at,
        data={
            "wallet_id": public_id,
            "user_id": format_public_id("usr", wallet.user_id),
            "currency": wallet.currency,
            "address": wallet.address,
        },
    )
