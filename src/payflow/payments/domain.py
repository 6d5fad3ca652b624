"""Payments' rules: the state machine, what may happen to a payment in each state, and
what a ledger refusal means to a payer. Pure, no I/O.

INITIATED → SUCCEEDED | FAILED; a terminal payment never changes state again (models.py
and the conditional updates in service.py guard the same in the database). Refunds only
add to a SUCCEEDED payment's `refunded_amount`, never past its `captured_amount`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from payflow.errors import PayFlowError
from payflow.identity.domain import Principal
from payflow.ledger import TransferResult as R
from payflow.transfers.domain import ledger_error


class PaymentStatus(StrEnum):
    INITIATED = "INITIATED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class FailureReason(StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    MERCHANT_SUSPENDED = "merchant_suspended"
    AUTHORIZATION_EXPIRED = "authorization_expired"
    CANCELED = "canceled"
    WALLET_CLOSED = "wallet_closed"
    DECLINED = "declined"


class RefundReason(StrEnum):
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    REQUESTED_BY_CUSTOMER = "requested_by_customer"


METADATA_KEYS_MAX: Final = 20
METADATA_KEY_LENGTH_MAX: Final = 40
METADATA_VALUE_LENGTH_MAX: Final = 500
DESCRIPTION_LENGTH_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class Payment:
    id: uuid.UUID
    merchant_id: uuid.UUID
    merchant_user_id: uuid.UUID
    merchant_wallet_id: uuid.UUID
    payer_user_id: uuid.UUID
    payer_wallet_id: uuid.UUID
    idempotency_key: str
    amount: int
    currency: str
    capture_method: CaptureMethod
    status: PaymentStatus
    failure_reason: str | None
    authorized_amount: int | None
    captured_amount: int
    refunded_amount: int
    description: str | None
    metadata: dict[str, str] | None
    authorization_expires_at: int | None
    created_at: int
    succeeded_at: int | None
    failed_at: int | None

    @property
    def refundable_amount(self) -> int:
        return self.captured_amount - self.refunded_amount

    def same_request(
        self, *, merchant_id: uuid.UUID, amount: int, currency: str, method: str
    ) -> bool:
        """Whether a request under this payment's idempotency key asks for this payment."""
        return (self.merchant_id, self.amount, self.currency, self.capture_method.value) == (
            merchant_id,
            amount,
            currency,
            method,
        )


@dataclass(frozen=True, slots=True)
class Refund:
    id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    reason: str | None
    created_by: uuid.UUID
    created_at: int


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, str] | None:
    """Metadata is a small flat map of text: at most 20 keys of 1-40 characters, values
    of at most 500."""
    if metadata is None:
        return None
    bad = (
        len(metadata) > METADATA_KEYS_MAX
        or any(not 1 <= len(k) <= METADATA_KEY_LENGTH_MAX for k in metadata)
        or any(
            not isinstance(v, str) or len(v) > METADATA_VALUE_LENGTH_MAX for v in metadata.values()
        )
    )
    if bad:
        raise PayFlowError(
            "metadata_invalid",
            f"metadata holds at most {METADATA_KEYS_MAX} keys of 1-{METADATA_KEY_LENGTH_MAX} "
            f"characters with text values of at most {METADATA_VALUE_LENGTH_MAX}",
            http_status=422,
        )
    # Stored as JSON: what is stored is what a replay and a read give back.
    checked: dict[str, str] = json.loads(json.dumps(metadata))
    return checked


def failure_of(code: R) -> FailureReason:
    """Why a payment failed when the ledger refused its transfer."""
    if code is R.EXCEEDS_CREDITS:
        return FailureReason.INSUFFICIENT_FUNDS
    if code in (R.DEBIT_ACCOUNT_CLOSED, R.CREDIT_ACCOUNT_CLOSED):
        return FailureReason.WALLET_CLOSED
    return FailureReason.DECLINED


def check_pending(payment: Payment, *, now_ns: int) -> None:
    """409 unless the payment is an authorization that can still be captured or canceled."""
    if payment.status is PaymentStatus.SUCCEEDED:
        raise PayFlowError(
            "payment_already_succeeded",
            "the payment already succeeded: it can only be refunded",
            http_status=409,
        )
    if payment.status is PaymentStatus.FAILED:
        raise PayFlowError(
            "payment_already_failed",
            f"the payment already failed ({payment.failure_reason})",
            http_status=409,
        )
    expires_at = payment.authorization_expires_at
    assert expires_at is not None, "an INITIATED payment is an authorization"
    if expires_at <= now_ns:
        raise authorization_expired()


def authorization_expired() -> PayFlowError:
    return PayFlowError(
        "authorization_expired",
        "the authorization has expired; its money was released",
        http_status=409,
    )


def check_capture_amount(payment: Payment, amount: int | None) -> int:
    """What to capture: all of the authorization by default, never more."""
    assert payment.authorized_amount is not None
    if amount is None:
        return payment.authorized_amount
    if amount > payment.authorized_amount:
        raise PayFlowError(
            "capture_exceeds_authorization",
            f"at most the authorized {payment.authorized_amount} can be captured",
            http_status=422,
        )
    return amount


def check_refund(payment: Payment, amount: int | None) -> int:
    """What to refund: the rest by default; never more than captured minus refunded."""
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise PayFlowError(
            "payment_not_refundable",
            f"only a SUCCEEDED payment can be refunded; this one is {payment.status.value}",
            http_status=409,
        )
    left = payment.refundable_amount
    if left == 0:
        raise PayFlowError(
            "payment_fully_refunded", "the payment has been refunded in full", http_status=409
        )
    if amount is None:
        return left
    if amount > left:
        raise PayFlowError(
            "refund_exceeds_payment", f"at most {left} is left to refund", http_status=422
        )
    return amount


def refund_refused(code: R) -> PayFlowError:
    """The ledger refused a refund's transfer: usually the merchant's wallet is short
    (its money was settled out)."""
    if code is R.EXCEEDS_CREDITS:
        return PayFlowError(
            "insufficient_funds",
            "the merchant's wallet balance is too low for this refund",
            http_status=422,
        )
    return ledger_error(code)


def capture_refused(code: R) -> PayFlowError:
    """The ledger refused to post or void an authorization: it was resolved meanwhile."""
    if code is R.PENDING_TRANSFER_EXPIRED:
        return authorization_expired()
    if code is R.PENDING_TRANSFER_ALREADY_POSTED:
        return PayFlowError(
            "payment_already_succeeded", "the payment was captured meanwhile", http_status=409
        )
    if code is R.PENDING_TRANSFER_ALREADY_VOIDED:
        return PayFlowError(
            "payment_already_failed", "the payment was canceled meanwhile", http_status=409
        )
    return ledger_error(code)


def payment_not_found(text: str) -> PayFlowError:
    return PayFlowError("payment_not_found", f"no such payment {text!r}", http_status=404)


def can_see(payment: Payment, principal: Principal) -> bool:
    """The paying customer, the merchant (user or API key) and operators see a payment."""
    return principal.is_operator or principal.user_id in (
        payment.payer_user_id,
        payment.merchant_user_id,
    )


def check_merchant(payment: Payment, principal: Principal, text: str) -> None:
    """Only the payment's merchant captures, cancels and refunds it: 403 for those who
    may see it, 404 for everybody else (they learn nothing about it)."""
    if principal.user_id == payment.merchant_user_id:
        return
    if can_see(payment, principal):
        raise PayFlowError("forbidden", "only the payment's merchant can do this", http_status=403)
    raise payment_not_found(text)
