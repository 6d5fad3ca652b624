"""What payments tell the rest of PayFlow (docs/payments.md, "Events").

Each event's data keeps the contract its consumers rely on at the top (rewards reads
`payment.succeeded` and `payment.refunded`, see rewards/events.py; webhooks route by the
keys ending in `user_id`), and carries the object as the API shows it under `payment`
(and `refund`). A payment is never also reported as `transfer.completed`: rewards would
count the same money twice.
"""

from __future__ import annotations

from typing import Any, Final

from payflow.events.domain import Event, derived_event_id
from payflow.ids import format_public_id
from payflow.payments.domain import Payment, Refund
from payflow.payments.views import payment_view, refund_view

PAYMENT_INITIATED: Final = "payment.initiated"
PAYMENT_SUCCEEDED: Final = "payment.succeeded"
PAYMENT_FAILED: Final = "payment.failed"
PAYMENT_REFUNDED: Final = "payment.refunded"


def _parties(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": format_public_id("pay", payment.id),
        "currency": payment.currency,
        "merchant_id": format_public_id("mer", payment.merchant_id),
        "customer_user_id": format_public_id("usr", payment.payer_user_id),
        "customer_wallet_id": format_public_id("wal", payment.payer_wallet_id),
        "merchant_user_id": format_public_id("usr", payment.merchant_user_id),
        "merchant_wallet_id": format_public_id("wal", payment.merchant_wallet_id),
    }


def _event(payment: Payment, event_type: str, data: dict[str, Any], *, at: int) -> Event:
    return Event(
        id=derived_event_id(payment.id, event_type),
        type=event_type,
        aggregate_type="payment",
        aggregate_id=format_public_id("pay", payment.id),
        occurred_at=at,
        data={**data, "payment": payment_view(payment)},
    )


def payment_initiated(payment: Payment) -> Event:
    """A manual-capture payment was authorized: its money is held for the merchant."""
    assert payment.authorized_amount is not None
    data = {**_parties(payment), "amount": payment.authorized_amount}
    return _event(payment, PAYMENT_INITIATED, data, at=payment.created_at)


def payment_succeeded(payment: Payment) -> Event:
    """The money is the merchant's; `amount` is what the customer paid (the captured
    amount)."""
    assert payment.succeeded_at is not None
    data = {**_parties(payment), "amount": payment.captured_amount}
    return _event(payment, PAYMENT_SUCCEEDED, data, at=payment.succeeded_at)


def payment_failed(payment: Payment) -> Event:
    """The payment failed (declined, canceled, or its authorization expired)."""
    assert payment.failed_at is not None
    data = {
        **_parties(payment),
        "amount": payment.amount,
        "failure_reason": payment.failure_reason,
    }
    return _event(payment, PAYMENT_FAILED, data, at=payment.failed_at)


def payment_refunded(payment: Payment, refund: Refund) -> Event:
    """One refund (full or partial); `payment_amount` is what the payment took."""
    data = {
        "refund_id": format_public_id("re", refund.id),
        "payment_id": format_public_id("pay", payment.id),
        "amount": refund.amount,
        "payment_amount": payment.captured_amount,
        "currency": refund.currency,
        "customer_user_id": format_public_id("usr", payment.payer_user_id),
        "merchant_user_id": format_public_id("usr", payment.merchant_user_id),
        "merchant_id": format_public_id("mer", payment.merchant_id),
        "refund": refund_view(refund),
    }
    return Event(
        id=derived_event_id(refund.id, PAYMENT_REFUNDED),
        type=PAYMENT_REFUNDED,
        aggregate_type="payment",
        aggregate_id=format_public_id("pay", payment.id),
        occurred_at=refund.created_at,
        data={**data, "payment": payment_view(payment)},
    )
