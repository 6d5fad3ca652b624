"""Payouts' request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from payflow.api.schemas import Amount, Currency, Note, StrictModel


class DestinationBody(StrictModel):
    """Exactly one form: `vpa`, or `bank_code` with `account_number`."""

    vpa: Annotated[str | None, Field(max_length=100, examples=["asha@okbank"])] = None
    bank_code: Annotated[str | None, Field(max_length=11, examples=["OKBK0000001"])] = None
    account_number: Annotated[str | None, Field(max_length=18, examples=["123456789012"])] = None


class PayoutBody(StrictModel):
    amount: Amount
    currency: Currency
    destination: DestinationBody
    description: Note | None = None


class DestinationOut(BaseModel):
    vpa: str | None = None
    bank_code: str | None = None
    account_number: str | None = None


Steps = Literal[
    "TRANSACTION_INITIATED",
    "DEBIT_SUCCESS",
    "DEBIT_FAILED",
    "CREDIT_DUE",
    "CREDIT_SUCCESS",
    "CREDIT_FAILED",
    "REFUND_REQUESTED",
    "REFUND_COMPLETED",
    "TRANSACTION_COMPLETED",
    "TRANSACTION_FAILED",
]


class PayoutOut(BaseModel):
    id: str
    object: Literal["payout"]
    status: Literal["processing", "completed", "failed"]
    step: Steps
    amount: int
    currency: str
    destination: DestinationOut
    description: str | None
    user_id: str
    wallet_id: str
    source: Literal["api", "settlement"]
    source_id: str | None
    failure_reason: str | None
    bank_transaction_id: str | None
    created_at: str
    updated_at: str


class AttemptOut(BaseModel):
    number: int
    operation: Literal["credit", "inquiry"]
    started_at: str
    finished_at: str
    outcome: str
    detail: str | None


class StepOut(BaseModel):
    step: Steps
    at: str
    detail: str | None
    # The bank calls made while the saga was at this step (credits and inquiries).
    attempts: list[AttemptOut]


class PayoutDetailOut(PayoutOut):
    timeline: list[StepOut]


class PayoutPage(BaseModel):
    data: list[PayoutOut]
    next_cursor: str | None
