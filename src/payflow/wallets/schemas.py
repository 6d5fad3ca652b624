"""Wallets' request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from payflow.api.schemas import Amount, Currency, StrictModel
from payflow.ids import format_public_id
from payflow.timestamps import to_rfc3339
from payflow.wallets.domain import Balance, Wallet


class BalanceOut(BaseModel):
    posted: int
    pending: int
    available: int


class WalletOut(BaseModel):
    id: str
    object: Literal["wallet"] = "wallet"
    currency: str
    address: str
    balance: BalanceOut
    created_at: str

    @classmethod
    def of(cls, wallet: Wallet, balance: Balance) -> WalletOut:
        return cls(
            id=format_public_id("wal", wallet.id),
            currency=wallet.currency,
            address=wallet.address,
            balance=BalanceOut(
                posted=balance.posted, pending=balance.pending, available=balance.available
            ),
            created_at=to_rfc3339(wallet.created_at),
        )


class OpenWalletBody(StrictModel):
    currency: Currency


class TopupBody(StrictModel):
    amount: Amount


class StatementEntry(BaseModel):
    transfer_id: str
    kind: Literal[
        "topup",
        "p2p",
        "capture",
        "adjustment",
        "hold",
        "hold_captured",
        "hold_released",
        "hold_expired",
        "cashback",
        "clawback",
        "pool_funding",
        "other",
    ]
    direction: Literal["credit", "debit"]
    amount: int
    counterparty: str | None
    balance: BalanceOut
    created_at: str


class Statement(BaseModel):
    data: list[StatementEntry]
    next_cursor: str | None
