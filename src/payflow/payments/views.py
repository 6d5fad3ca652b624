"""How payments and refunds look on the wire (JSON-ready dicts, public ids)."""

from __future__ import annotations

from typing import Any

from payflow.ids import format_public_id
from payflow.payments.domain import Payment, Refund
from payflow.timestamps import to_rfc3339


def _time(timestamp: int | None) -> str | None:
    return to_rfc3339(timestamp) if timestamp is not None else None


def payment_view(payment: Payment) -> dict[str, Any]:
    return {
        "id": format_public_id("pay", payment.id),
        "object": "payment",
        "status": payment.status.value,
        "failure_reason": payment.failure_reason,
        "merchant": format_public_id("mer", payment.merchant_id),
        "merchant_user_id": format_public_id("usr", payment.merchant_user_id),
        "merchant_wallet_id": format_public_id("wal", payment.merchant_wallet_id),
        "customer_user_id": format_public_id("usr", payment.payer_user_id),
        "customer_wallet_id": format_public_id("wal", payment.payer_wallet_id),
        "amount": payment.amount,
        "currency": payment.currency,
        "capture_method": payment.capture_method.value,
        "authorized_amount": payment.authorized_amount,
        "captured_amount": payment.captured_amount,
        "refunded_amount": payment.refunded_amount,
        "description": payment.description,
        "metadata": payment.metadata or {},
        "authorization_expires_at": _time(payment.authorization_expires_at),
        "created_at": to_rfc3339(payment.created_at),
        "succeeded_at": _time(payment.succeeded_at),
        "failed_at": _time(payment.failed_at),
    }


def refund_view(refund: Refund) -> dict[str, Any]:
    return {
        "id": format_public_id("re", refund.id),
        "object": "refund",
        "status": "succeeded",
        "payment": format_public_id("pay", refund.payment_id),
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": refund.reason,
        "created_at": to_rfc3339(refund.created_at),
    }
