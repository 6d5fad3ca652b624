"""Transfers' and holds' request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from payflow.api.schemas import Amount, Currency, Note, StrictModel

HOLD_EXPIRY_S_MAX = 30 * 86_400


class TransferBody(StrictModel):
    to: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="A handle, an address `handle@payflow`, or a wallet id `wal_…`",
            examples=["ravi@payflow"],
        ),
    ]
    amount: Amount
    currency: Currency
    note: Note | None = None


class WalletRef(BaseModel):
    wallet_id: str
    address: str | None


class TransferOut(BaseModel):
    id: str
    object: Literal["transfer"]
    kind: Literal["p2p", "topup", "capture"]
    status: Literal["succeeded"]
    amount: int
    currency: str
    from_: WalletRef | None = Field(alias="from")
    to: WalletRef | None
    note: str | None
    hold_id: str | None
    created_at: str


class TransferPage(BaseModel):
    data: list[TransferOut]
    next_cursor: str | None


class HoldBody(StrictModel):
    amount: Amount
    currency: Currency
    expires_in_s: Annotated[int | None, Field(strict=True, ge=1, le=HOLD_EXPIRY_S_MAX)] = None
    note: Note | None = None


class CaptureBody(StrictModel):
    to: Annotated[str, Field(min_length=1, max_length=100, description="The payee")]
    amount: Amount | None = Field(default=None, description="Default: the whole hold")


class ReleaseBody(StrictModel):
    pass


class HoldOut(BaseModel):
    id: str
    object: Literal["hold"]
    status: Literal["held", "captured", "released", "expired"]
    amount: int
    captured_amount: int
    currency: str
    wallet: WalletRef | None
    payee: WalletRef | None
    note: str | None
    expires_at: str | None
    created_at: str
    resolved_at: str | None


class CaptureOut(HoldOut):
    transfer: TransferOut
