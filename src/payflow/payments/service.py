"""Payments' use cases that move money through the API's micro-batcher: plans that read
and check, then ledger work whose completion writes the payment with its event in the
batch's transaction. Refunds are in refunds.py, the expiry sweep in sweep.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Update, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.problems import problem
from payflow.api.replies import Completion, Reply
from payflow.errors import PayFlowError
from payflow.events.outbox import emit, outbox_row
from payflow.ledger import Transfer, TransferFlags, TransferOutcome
from payflow.merchants.domain import Merchant
from payflow.payments import models
from payflow.payments.domain import (
    CaptureMethod,
    FailureReason,
    Payment,
    PaymentStatus,
    capture_refused,
    check_capture_amount,
    check_pending,
    failure_of,
)
from payflow.payments.events import (
    payment_failed,
    payment_initiated,
    payment_succeeded,
)
from payflow.payments.queries import get_payment, payment_by_key
from payflow.payments.views import payment_view
from payflow.transfers.domain import succeeded
from payflow.wallets.domain import TransferCode, Wallet

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A customer's checked request to pay a merchant."""

    merchant: Merchant
    payer: Wallet
    idempotency_key: str
    amount: int
    currency: str
    capture_method: CaptureMethod
    description: str | None
    metadata: dict[str, str] | None


def _new_payment(payment_id: uuid.UUID, request: PaymentRequest, *, at: int) -> Payment:
    """The payment as INITIATED at `at`; callers move it on."""
    return Payment(
        id=payment_id,
        merchant_id=request.merchant.id,
        merchant_user_id=request.merchant.user_id,
        merchant_wallet_id=request.merchant.wallet_id,
        payer_user_id=request.payer.user_id,
        payer_wallet_id=request.payer.id,
        idempotency_key=request.idempotency_key,
        amount=request.amount,
        currency=request.currency,
        capture_method=request.capture_method,
        status=PaymentStatus.INITIATED,
        failure_reason=None,
        authorized_amount=None,
        captured_amount=0,
        refunded_amount=0,
        description=request.description,
        metadata=request.metadata,
        authorization_expires_at=None,
        created_at=at,
        succeeded_at=None,
        failed_at=None,
    )


def _row(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "merchant_id": payment.merchant_id,
        "merchant_user_id": payment.merchant_user_id,
        "merchant_wallet_id": payment.merchant_wallet_id,
        "payer_user_id": payment.payer_user_id,
        "payer_wallet_id": payment.payer_wallet_id,
        "idempotency_key": payment.idempotency_key,
        "amount": payment.amount,
        "currency": payment.currency,
        "capture_method": payment.capture_method.value,
        "status": payment.status.value,
        "failure_reason": payment.failure_reason,
        "authorized_amount": payment.authorized_amount,
        "captured_amount": payment.captured_amount,
        "refunded_amount": payment.refunded_amount,
        "description": payment.description,
        "metadata": payment.metadata,
        "authorization_expires_at": payment.authorization_expires_at,
        "created_at": payment.created_at,
        "succeeded_at": payment.succeeded_at,
        "failed_at": payment.failed_at,
    }


def declined(payment: Payment) -> Reply:
    """A payment that failed as it was made: 402, as card declines are answered, with the
    recorded payment in the problem (`payment`)."""
    assert payment.failure_reason is not None
    body = problem(payment.failure_reason, f"the payment failed: {payment.failure_reason}", 402)
    return Reply(402, {**body, "payment": payment_view(payment)})


def _failed(payment: Payment, reason: FailureReason, *, at: int) -> Payment:
    return replace(payment, status=PaymentStatus.FAILED, failure_reason=reason.value, failed_at=at)


async def existing_reply(conn: AsyncConnection, request: PaymentRequest) -> Reply | None:
    """The payment the payer already made under this idempotency key (200), or None;
    422 if that key made a different payment."""
    found = await payment_by_key(
        conn, payer_user_id=request.payer.user_id, idempotency_key=request.idempotency_key
    )
    if found is None:
        return None
    same = found.same_request(
        merchant_id=request.merchant.id,
        amount=request.amount,
        currency=request.currency,
        method=request.capture_method.value,
    )
    if not same:
        raise PayFlowError(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different payment",
            http_status=422,
        )
    return Reply(200, payment_view(found))


def replay(reply: Reply, claim: Claim) -> LedgerWork:
    """Ledger work that moves nothing and answers `reply`."""
    return LedgerWork(transfers=(), complete=lambda _: Completion(reply), claim=claim)


def plan_payment(
    claim: Claim, request: PaymentRequest, *, authorization_expiry_s: int, now_ns: int
) -> LedgerWork:
    """Pay the merchant at once (automatic capture) or authorize: hold the money for it
    in a pending transfer that expires (manual capture). A refusal by the ledger is
    recorded as a FAILED payment."""
    manual = request.capture_method is CaptureMethod.MANUAL
    transfer = Transfer(
        id=claim.resource_id,
        debit_account_id=request.payer.id,
        credit_account_id=request.merchant.wallet_id,
        amount=request.amount,
        currency=request.currency,
        code=int(TransferCode.PAYMENT),
        flags=int(TransferFlags.PENDING) if manual else 0,
        timeout_s=authorization_expiry_s if manual else 0,
    )

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        [outcome] = outcomes
        if not succeeded(outcome.code):
            payment = _failed(
                _new_payment(transfer.id, request, at=now_ns), failure_of(outcome.code), at=now_ns
            )
            event = payment_failed(payment)
            return Completion(
                declined(payment), inserts=[(models.payments, _row(payment)), outbox_row(event)]
            )
        assert outcome.transfer is not None
        at = outcome.transfer.timestamp
        payment = _new_payment(transfer.id, request, at=at)
        if manual:
            payment = replace(
                payment,
                authorized_amount=request.amount,
                authorization_expires_at=at + authorization_expiry_s * _NS,
            )
            event = payment_initiated(payment)
        else:
            payment = replace(
                payment,
                status=PaymentStatus.SUCCEEDED,
                captured_amount=request.amount,
                succeeded_at=at,
            )
            event = payment_succeeded(payment)
        return Completion(
            Reply(201, payment_view(payment)),
            inserts=[(models.payments, _row(payment)), outbox_row(event)],
        )

    return LedgerWork(transfers=(transfer,), complete=complete, claim=claim)


async def record_declined(
    conn: AsyncConnection, claim: Claim, request: PaymentRequest, *, reason: FailureReason, at: int
) -> Reply:
    """Record a payment that fails before any money moves (its merchant is suspended)."""
    earlier = await get_payment(conn, claim.resource_id)
    if earlier is not None:
        # A takeover of this request after its first attempt's lock ran out.
        return declined(earlier)
    payment = _failed(_new_payment(claim.resource_id, request, at=at), reason, at=at)
    await conn.execute(insert(models.payments).values(**_row(payment)))
    await emit(conn, [payment_failed(payment)])
    return declined(payment)


def _resolve(payment: Payment) -> Update:
    """The move out of INITIATED; a no-op for a payment that is not INITIATED any more."""
    table = models.payments
    return (
        update(table)
        .where(table.c.id == payment.id, table.c.status == PaymentStatus.INITIATED.value)
        .values(
            status=payment.status.value,
            captured_amount=payment.captured_amount,
            succeeded_at=payment.succeeded_at,
            failure_reason=payment.failure_reason,
            failed_at=payment.failed_at,
        )
    )


def _resolution(claim: Claim, payment: Payment, transfer: Transfer, resolved: Any) -> LedgerWork:
    """Ledger work posting or voiding the authorization; `resolved(at)` is the payment
    afterwards."""

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        [outcome] = outcomes
        if not succeeded(outcome.code):
            return Completion(Reply.error(capture_refused(outcome.code)))
        assert outcome.transfer is not None
        after: Payment = resolved(outcome.transfer.timestamp)
        event = payment_succeeded(after) if after.succeeded_at else payment_failed(after)
        return Completion(
            Reply(200, payment_view(after)),
            inserts=[outbox_row(event)],
            statements=[_resolve(after)],
        )

    return LedgerWork(transfers=(transfer,), complete=complete, claim=claim)


def plan_capture(claim: Claim, payment: Payment, *, amount: int | None, now_ns: int) -> LedgerWork:
    """Post all or part of the authorization to the merchant; the rest goes back to the
    customer (the ledger's partial post)."""
    check_pending(payment, now_ns=now_ns)
    amount = check_capture_amount(payment, amount)
    post = Transfer(
        id=claim.resource_id,
        pending_id=payment.id,
        amount=amount,
        flags=int(TransferFlags.POST_PENDING),
    )
    return _resolution(
        claim,
        payment,
        post,
        lambda at: replace(
            payment, status=PaymentStatus.SUCCEEDED, captured_amount=amount, succeeded_at=at
        ),
    )


def plan_cancel(claim: Claim, payment: Payment, *, now_ns: int) -> LedgerWork:
    """Void the authorization: the money is the customer's again; the payment FAILED
    `canceled`."""
    check_pending(payment, now_ns=now_ns)
    void = Transfer(
        id=claim.resource_id, pending_id=payment.id, flags=int(TransferFlags.VOID_PENDING)
    )
    return _resolution(
        claim, payment, void, lambda at: _failed(payment, FailureReason.CANCELED, at=at)
    )
