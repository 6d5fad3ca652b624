"""Merchants' request and response bodies, and how a merchant looks on the wire."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from payflow.api.schemas import Currency, StrictModel
from payflow.identity.domain import HANDLE_PATTERN
from payflow.identity.schemas import Email, Password
from payflow.ids import format_public_id
from payflow.merchants.domain import Destination, Merchant
from payflow.timestamps import to_rfc3339

# Loose bounds only: domain.py checks the shapes and answers with specific codes.
BusinessName = Annotated[str, Field(min_length=1, max_length=200, examples=["Chai Point"])]
IntervalS = Annotated[
    int,
    Field(strict=True, description="Seconds between settlements (60 to 2592000)", examples=[86400]),
]


class DestinationBody(StrictModel):
    """A bank account (`bank_code` + `account_number`) or a UPI address (`vpa`)."""

    bank_code: Annotated[str | None, Field(max_length=20, examples=["HDFC0001234"])] = None
    account_number: Annotated[str | None, Field(max_length=30, examples=["50100012345678"])] = None
    vpa: Annotated[str | None, Field(max_length=120, examples=["chaipoint@okhdfc"])] = None

    def destination(self) -> Destination:
        return Destination(self.bank_code, self.account_number, self.vpa)


class MerchantBody(StrictModel):
    business_name: BusinessName
    settlement_currency: Currency | None = Field(
        default=None, description="Default: PayFlow's default currency"
    )
    settlement_destination: DestinationBody
    settlement_interval_s: IntervalS | None = None


class NewMerchantUser(StrictModel):
    email: Email
    password: Password
    name: Annotated[str, Field(min_length=1, max_length=100)]
    handle: Annotated[str, Field(pattern=HANDLE_PATTERN, examples=["chaipoint"])]


class OnboardBody(MerchantBody):
    """An operator onboards an existing merchant user (`user_id`) or a new one (`user`)."""

    user_id: Annotated[str | None, Field(max_length=40, examples=["usr_0190…"])] = None
    user: NewMerchantUser | None = None
    fee_bps: Annotated[int | None, Field(strict=True)] = None


class MerchantPatch(StrictModel):
    settlement_destination: DestinationBody | None = None
    settlement_interval_s: IntervalS | None = None


class OperatorPatch(StrictModel):
    fee_bps: Annotated[int | None, Field(strict=True, description="Basis points, 0-10000")] = None
    status: Literal["active", "suspended"] | None = None


class DestinationOut(BaseModel):
    type: Literal["bank_account", "vpa"]
    bank_code: str | None
    account_number: str | None
    vpa: str | None


class MerchantOut(BaseModel):
    id: str
    object: Literal["merchant"]
    user_id: str
    wallet_id: str
    business_name: str
    status: Literal["active", "suspended"]
    settlement_currency: str
    settlement_destination: DestinationOut
    settlement_interval_s: int
    fee_bps: int
    created_at: str
    updated_at: str


class MerchantPage(BaseModel):
    data: list[MerchantOut]
    next_cursor: str | None


def merchant_view(merchant: Merchant) -> dict[str, Any]:
    return {
        "id": format_public_id("mer", merchant.id),
        "object": "merchant",
        "user_id": format_public_id("usr", merchant.user_id),
        "wallet_id": format_public_id("wal", merchant.wallet_id),
        "business_name": merchant.business_name,
        "status": merchant.status.value,
        "settlement_currency": merchant.settlement_currency,
        "settlement_destination": {
            "type": "vpa" if merchant.vpa is not None else "bank_account",
            "bank_code": merchant.bank_code,
            "account_number": merchant.account_number,
            "vpa": merchant.vpa,
        },
        "settlement_interval_s": merchant.settlement_interval_s,
        "fee_bps": merchant.fee_bps,
        "created_at": to_rfc3339(merchant.created_at),
        "updated_at": to_rfc3339(merchant.updated_at),
    }
