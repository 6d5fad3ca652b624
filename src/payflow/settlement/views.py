"""Settlements as the API and events show them."""

from __future__ import annotations

from typing import Any

from payflow.ids import format_public_id
from payflow.settlement.domain import Line, Settlement
from payflow.timestamps import to_rfc3339

PREFIX = "stl"


def public_id(settlement: Settlement) -> str:
    return format_public_id(PREFIX, settlement.id)


def settlement_view(settlement: Settlement) -> dict[str, Any]:
    """The settlement without its lines: what lists show and events carry. It names the
    merchant's user (`merchant_user_id`): webhooks route events by keys ending in
    `user_id`."""
    return {
        "id": public_id(settlement),
        "object": "settlement",
        "status": settlement.status.value,
        "merchant_id": format_public_id("mer", settlement.merchant_id),
        "merchant_user_id": format_public_id("usr", settlement.merchant_user_id),
        "wallet_id": format_public_id("wal", settlement.wallet_id),
        "currency": settlement.currency,
        "period_start": to_rfc3339(settlement.period_start),
        "period_end": to_rfc3339(settlement.period_end),
        "line_count": settlement.line_count,
        "gross_amount": settlement.gross_amount,
        "refunded_amount": settlement.refunded_amount,
        "fee_amount": settlement.fee_amount,
        "net_amount": settlement.net_amount,
        "payout_id": f"po_{settlement.payout_id.hex}",
        "failure_reason": settlement.failure_reason,
        "created_at": to_rfc3339(settlement.created_at),
        "updated_at": to_rfc3339(settlement.updated_at),
    }


def line_view(line: Line) -> dict[str, Any]:
    return {
        "payment_id": format_public_id("pay", line.payment_id),
        "amount": line.amount,
        "refunded_amount": line.refunded_amount,
        "fee_amount": line.fee_amount,
        "net_amount": line.net_amount,
        "succeeded_at": to_rfc3339(line.succeeded_at),
    }
