"""HTTP routes for merchant payments and refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, State, move_money, run_idempotent
from payflow.api.idempotency import Claim, check_key
from payflow.api.ledger_batch import LedgerWork
from payflow.api.problems import responses
from payflow.api.replies import Reply
from payflow.api.schemas import Limit, money_moving, page, parse_cursor, parse_id
from payflow.db import read
from payflow.errors import PayFlowError
from payflow.identity.domain import Principal, Role
from payflow.merchants import service as merchants
from payflow.merchants.domain import Merchant
from payflow.payments import queries, refunds, service
from payflow.payments.domain import (
    CaptureMethod,
    FailureReason,
    Payment,
    PaymentStatus,
    RefundReason,
    can_see,
    check_merchant,
    check_metadata,
    payment_not_found,
)
from payflow.payments.queries import PaymentFilter
from payflow.payments.schemas import (
    CancelBody,
    CaptureBody,
    PaymentBody,
    PaymentOut,
    PaymentPage,
    PaymentStatusName,
    RefundBody,
    RefundOut,
    RefundPage,
)
from payflow.payments.views import payment_view, refund_view
from payflow.timestamps import now_ns
from payflow.wallets.service import wallet_of

router = APIRouter(prefix="/v1", tags=["payments"], responses=responses(401, 403, 429))

_CREATE = money_moving(PaymentOut)
_CREATE["responses"].update(responses(402))
_CREATE["responses"][200] = {
    "model": PaymentOut,
    "description": "The payment this payer already made with this Idempotency-Key",
}


async def _payee(conn: AsyncConnection, text: str) -> Merchant:
    merchant = await merchants.get_merchant(
        conn, parse_id("mer", text, not_found="merchant_not_found")
    )
    if merchant is None:
        raise merchants.merchant_not_found(text)
    return merchant


async def _request(
    conn: AsyncConnection, principal: Principal, body: PaymentBody, key: str
) -> service.PaymentRequest:
    merchant = await _payee(conn, body.merchant)
    if body.currency != merchant.settlement_currency:
        raise PayFlowError(
            "currency_not_accepted",
            f"this merchant accepts {merchant.settlement_currency} only",
            http_status=422,
        )
    metadata = check_metadata(body.metadata)
    payer = await wallet_of(conn, user_id=principal.user_id, currency=body.currency)
    return service.PaymentRequest(
        merchant=merchant,
        payer=payer,
        idempotency_key=key,
        amount=body.amount,
        currency=body.currency,
        capture_method=CaptureMethod(body.capture_method),
        description=body.description,
        metadata=metadata,
    )


@router.post("/payments", **_CREATE)
async def create_payment(
    body: PaymentBody, request: Request, principal: Caller, state: State
) -> Response:
    """A customer pays a merchant: at once (`automatic`, 201 SUCCEEDED) or authorized for
    a later capture (`manual`, 201 INITIATED). A declined payment is recorded FAILED and
    answered 402 with it in `payment`. Needs an Idempotency-Key; the same key returns the
    payment it made."""
    if principal.role is not Role.CUSTOMER:
        raise PayFlowError("forbidden", "customers pay merchants", http_status=403)
    key = check_key(request.headers.get("Idempotency-Key"))
    async with read(state.engine) as conn:
        asked = await _request(conn, principal, body, key)

    if not asked.merchant.is_active:

        async def decline(conn: AsyncConnection, claim: Claim) -> Reply:
            earlier = await service.existing_reply(conn, asked)
            if earlier is not None:
                return earlier
            reason = FailureReason.MERCHANT_SUSPENDED
            return await service.record_declined(conn, claim, asked, reason=reason, at=now_ns())

        return await run_idempotent(request, state, principal, body, decline)

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        earlier = await service.existing_reply(conn, asked)
        if earlier is not None:
            return service.replay(earlier, claim)
        expiry_s = state.settings.payment_authorization_expiry_s
        return service.plan_payment(claim, asked, authorization_expiry_s=expiry_s, now_ns=now_ns())

    return await move_money(request, state, principal, body, plan)


async def _visible(conn: AsyncConnection, principal: Principal, text: str) -> Payment:
    payment = await queries.get_payment(conn, parse_id("pay", text, not_found="payment_not_found"))
    if payment is None or not can_see(payment, principal):
        raise payment_not_found(text)
    return payment


async def _merchants_own(conn: AsyncConnection, principal: Principal, text: str) -> Payment:
    payment = await queries.get_payment(conn, parse_id("pay", text, not_found="payment_not_found"))
    if payment is None:
        raise payment_not_found(text)
    check_merchant(payment, principal, text)
    return payment


@router.get("/payments/{payment_id}", responses=responses(404))
async def get_payment(payment_id: str, principal: Caller, conn: Conn) -> PaymentOut:
    """One payment: to its customer, its merchant (user or API key) and operators."""
    return PaymentOut.model_validate(payment_view(await _visible(conn, principal, payment_id)))


@router.post("/payments/{payment_id}/capture", **money_moving(PaymentOut, 200))
async def capture_payment(
    payment_id: str, body: CaptureBody, request: Request, principal: Caller, state: State
) -> Response:
    """The merchant takes all or part (`amount`) of an authorized payment; the rest goes
    back to the customer. Needs an Idempotency-Key."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        payment = await _merchants_own(conn, principal, payment_id)
        merchant = await merchants.get_merchant(conn, payment.merchant_id)
        if merchant is not None and not merchant.is_active:
            raise PayFlowError(
                "merchant_suspended", "a suspended merchant cannot capture", http_status=409
            )
        return service.plan_capture(claim, payment, amount=body.amount, now_ns=now_ns())

    return await move_money(request, state, principal, body, plan)


@router.post("/payments/{payment_id}/cancel", **money_moving(PaymentOut, 200))
async def cancel_payment(
    payment_id: str,
    request: Request,
    principal: Caller,
    state: State,
    body: CancelBody | None = None,
) -> Response:
    """The merchant cancels an authorized payment: the money is the customer's again and
    the payment FAILED `canceled`. Needs an Idempotency-Key."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        payment = await _merchants_own(conn, principal, payment_id)
        return service.plan_cancel(claim, payment, now_ns=now_ns())

    # `{}` and no body are the same request: both fingerprint as bodiless.
    return await move_money(request, state, principal, None, plan)


def _ns(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    ns = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    # Timestamps are BIGINT: a moment past its range compares like its end.
    return max(-(2**63), min(ns, 2**63 - 1))


async def _scope(
    conn: AsyncConnection, principal: Principal, merchant: str | None
) -> PaymentFilter:
    """Whose payments the caller lists: operators anybody's (or one merchant's),
    merchants their own, customers those they made."""
    if principal.is_operator:
        return PaymentFilter(merchant_id=(await _payee(conn, merchant)).id if merchant else None)
    if merchant is not None:
        raise PayFlowError("forbidden", "only operators filter by merchant", http_status=403)
    if principal.role is Role.MERCHANT:
        mine = await merchants.merchant_of_user(conn, principal.user_id)
        if mine is None:
            raise PayFlowError(
                "merchant_not_found", "you have no merchant profile", http_status=404
            )
        return PaymentFilter(merchant_id=mine.id)
    return PaymentFilter(payer_user_id=principal.user_id)


@router.get("/payments", responses=responses(404, 422))
async def list_payments(
    principal: Caller,
    conn: Conn,
    status: Annotated[PaymentStatusName | None, Query()] = None,
    created_gte: Annotated[AwareDatetime | None, Query()] = None,
    created_lt: Annotated[AwareDatetime | None, Query()] = None,
    merchant: Annotated[str | None, Query(max_length=40, description="Operators only")] = None,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
) -> PaymentPage:
    """Payments newest first: a merchant's own, a customer's own, or (operators) all.
    Filter by `status` and creation time (`created_gte` ≤ created_at < `created_lt`,
    RFC 3339 with an offset)."""
    scope = await _scope(conn, principal, merchant)
    where = PaymentFilter(
        merchant_id=scope.merchant_id,
        payer_user_id=scope.payer_user_id,
        status=PaymentStatus(status) if status is not None else None,
        created_gte_ns=_ns(created_gte),
        created_lt_ns=_ns(created_lt),
    )
    found = await queries.list_payments(conn, where, limit=limit, after=parse_cursor(after))
    return PaymentPage.model_validate(
        page([payment_view(p) for p in found.items], found.next_cursor)
    )


@router.get("/payments/{payment_id}/refunds", responses=responses(404, 422))
async def list_payment_refunds(
    payment_id: str,
    principal: Caller,
    conn: Conn,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
) -> RefundPage:
    """A payment's refunds, newest first, to those who see the payment."""
    payment = await _visible(conn, principal, payment_id)
    found = await queries.list_refunds(conn, payment.id, limit=limit, after=parse_cursor(after))
    return RefundPage.model_validate(page([refund_view(r) for r in found.items], found.next_cursor))


@router.post("/refunds", **money_moving(RefundOut))
async def create_refund(
    body: RefundBody, request: Request, principal: Caller, state: State
) -> Response:
    """The merchant gives back all that is left of a SUCCEEDED payment, or `amount` of
    it; several refunds never add up to more than was captured. Needs an
    Idempotency-Key."""
    reason = RefundReason(body.reason) if body.reason is not None else None

    async def write(conn: AsyncConnection, claim: Claim) -> Reply:
        return await refunds.refund_payment(
            conn,
            claim,
            payment_text=body.payment,
            payment_id=parse_id("pay", body.payment, not_found="payment_not_found"),
            amount=body.amount,
            reason=reason,
            principal=principal,
        )

    return await run_idempotent(request, state, principal, body, write)


@router.get("/refunds/{refund_id}", responses=responses(404))
async def get_refund(refund_id: str, principal: Caller, conn: Conn) -> RefundOut:
    """One refund, to those who see its payment."""
    refund = await queries.get_refund(conn, parse_id("re", refund_id, not_found="refund_not_found"))
    payment = await queries.get_payment(conn, refund.payment_id) if refund is not None else None
    if refund is None or payment is None or not can_see(payment, principal):
        raise PayFlowError("refund_not_found", f"no such refund {refund_id!r}", http_status=404)
    return RefundOut.model_validate(refund_view(refund))
