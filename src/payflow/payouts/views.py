"""Payouts as the API and events show them."""

from __future__ import annotations

from typing import Any

from payflow.ids import format_public_id
from payflow.payouts.domain import Payout
from payflow.timestamps import to_rfc3339


def payout_view(payout: Payout) -> dict[str, Any]:
    """The payout without its timeline: what events carry and lists show."""
    return {
        "id": payout.reference,
        "object": "payout",
        "status": payout.status.value,
        "step": payout.step.value,
        "amount": payout.amount,
        "currency": payout.currency,
        "destination": payout.destination.to_json(),
        "description": payout.description,
        "user_id": format_public_id("usr", payout.user_id),
        "wallet_id": format_public_id("wal", payout.wallet_id),
        "source": payout.source,
        "source_id": payout.source_id,
        "failure_reason": payout.failure_reason,
        "bank_transaction_id": payout.bank_transaction_id,
        "created_at": to_rfc3339(payout.created_at),
        "updated_at": to_rfc3339(payout.updated_at),
    }
