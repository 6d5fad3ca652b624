"""Settlement's request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from payflow.api.schemas import StrictModel

StatusName = Literal["processing", "paid", "failed"]


class SettlementOut(BaseModel):
    id: str
    object: Literal["settlement"]
    status: StatusName
    merchant_id: str
    merchant_user_id: str
    wallet_id: str
    currency: str
    period_start: str
    period_end: str
    line_count: int
    gross_amount: int
    refunded_amount: int
    fee_amount: int
    net_amount: int
    payout_id: str
    failure_reason: str | None
    created_at: str
    updated_at: str


class LineOut(BaseModel):
    payment_id: str
    amount: int
    refunded_amount: int
    fee_amount: int
    net_amount: int
    succeeded_at: str


class SettlementDetailOut(SettlementOut):
    lines: list[LineOut]


class SettlementPage(BaseModel):
    data: list[SettlementOut]
    next_cursor: str | None


class RunBody(StrictModel):
    """`merchant`: settle this merchant now; omitted: every merchant with unsettled
    payments (up to `PAYFLOW_SETTLEMENT_MERCHANTS_MAX`)."""

    merchant: Annotated[str | None, Field(max_length=100, examples=["mer_0190…"])] = None


class RunOut(BaseModel):
    """The settlements this run made (none when there was nothing to pay)."""

    data: list[SettlementOut]
