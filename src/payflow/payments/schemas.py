"""Payments' and refunds' request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from payflow.api.schemas import Amount, Currency, StrictModel
from payflow.payments.domain import DESCRIPTION_LENGTH_MAX

PaymentStatusName = Literal["INITIATED", "SUCCEEDED", "FAILED"]


class PaymentBody(StrictModel):
    merchant: Annotated[str, Field(min_length=1, max_length=40, examples=["mer_0190…"])]
    amount: Amount
    currency: Currency
    capture_method: Literal["automatic", "manual"] = "automatic"
    description: Annotated[str | None, Field(min_length=1, max_length=DESCRIPTION_LENGTH_MAX)] = (
        None
    )
    metadata: dict[str, str] | None = Field(
        default=None, description="At most 20 keys (1-40 characters), text values (≤ 500)"
    )


class CaptureBody(StrictModel):
    amount: Amount | None = Field(default=None, description="Default: all that was authorized")


class CancelBody(StrictModel):
    pass


class RefundBody(StrictModel):
    payment: Annotated[str, Field(min_length=1, max_length=40, examples=["pay_0190…"])]
    amount: Amount | None = Field(default=None, description="Default: all that is left")
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None


class PaymentOut(BaseModel):
    id: str
    object: Literal["payment"]
    status: PaymentStatusName
    failure_reason: str | None
    merchant: str
    merchant_user_id: str
    merchant_wallet_id: str
    customer_user_id: str
    customer_wallet_id: str
    amount: int
    currency: str
    capture_method: Literal["automatic", "manual"]
    authorized_amount: int | None
    captured_amount: int
    refunded_amount: int
    description: str | None
    metadata: dict[str, str]
    authorization_expires_at: str | None
    created_at: str
    succeeded_at: str | None
    failed_at: str | None


class PaymentPage(BaseModel):
    data: list[PaymentOut]
    next_cursor: str | None


class RefundOut(BaseModel):
    id: str
    object: Literal["refund"]
    status: Literal["succeeded"]
    payment: str
    amount: int
    currency: str
    reason: str | None
    created_at: str


class RefundPage(BaseModel):
    data: list[RefundOut]
    next_cursor: str | None
