"""Rewards' request and response bodies, and how rules and cashbacks look on the wire."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from payflow.api.schemas import Amount, Currency, StrictModel
from payflow.ids import format_public_id
from payflow.ledger import Account
from payflow.money import AMOUNT_MAX
from payflow.rewards.domain import RATE_BP_MAX, RATE_BP_MIN, Cashback, Rule
from payflow.timestamps import to_rfc3339

RateBp = Annotated[
    int,
    Field(
        strict=True,
        ge=RATE_BP_MIN,
        le=RATE_BP_MAX,
        description="Cashback rate in basis points: 150 is 1.5 %, 10000 is 100 %",
    ),
]
MinimumAmount = Annotated[
    int,
    Field(strict=True, ge=0, le=AMOUNT_MAX, description="Smallest payment that earns cashback"),
]
# A reason of blanks is no reason: surrounding whitespace does not count.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class RuleBody(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    currency: Currency
    rate_bp: RateBp
    cap_amount: Annotated[Amount, Field(description="Most cashback one payment earns")]
    minimum_amount: MinimumAmount = 0
    merchant_id: (
        Annotated[
            str, Field(min_length=1, max_length=40, description="A merchant's user id `usr_…`")
        ]
        | None
    ) = None
    active: bool = True


class RuleOut(BaseModel):
    id: str
    object: Literal["cashback_rule"]
    name: str | None
    currency: str
    rate_bp: int
    cap_amount: int
    minimum_amount: int
    merchant_id: str | None
    active: bool
    created_by: str
    created_at: str
    updated_at: str


class RulePage(BaseModel):
    data: list[RuleOut]
    next_cursor: str | None


class FundingBody(StrictModel):
    amount: Amount
    currency: Currency
    reason: Reason


class FundingOut(BaseModel):
    id: str
    object: Literal["pool_funding"]
    amount: int
    currency: str
    reason: str
    created_at: str


class PoolOut(BaseModel):
    currency: str
    account_id: str
    balance: int = Field(description="What the pool can still pay out")
    credits_posted: int = Field(description="Funded, plus cashback clawed back")
    debits_posted: int = Field(description="Cashback paid out")


class CashbackOut(BaseModel):
    id: str
    object: Literal["cashback"]
    status: Literal["paid", "partially_clawed_back", "clawed_back"]
    amount: int
    clawed_back_amount: int
    currency: str
    wallet_id: str
    source_id: str
    rule_id: str
    created_at: str
    updated_at: str


class CashbackPage(BaseModel):
    data: list[CashbackOut]
    next_cursor: str | None


def rule_view(rule: Rule) -> dict[str, Any]:
    return {
        "id": format_public_id("rule", rule.id),
        "object": "cashback_rule",
        "name": rule.name,
        "currency": rule.currency,
        "rate_bp": rule.rate_bp,
        "cap_amount": rule.cap_amount,
        "minimum_amount": rule.minimum_amount,
        "merchant_id": format_public_id("usr", rule.merchant_id) if rule.merchant_id else None,
        "active": rule.active,
        "created_by": format_public_id("usr", rule.created_by),
        "created_at": to_rfc3339(rule.created_at),
        "updated_at": to_rfc3339(rule.updated_at),
    }


def cashback_view(cashback: Cashback) -> dict[str, Any]:
    return {
        "id": format_public_id("cbk", cashback.id),
        "object": "cashback",
        "status": cashback.status,
        "amount": cashback.amount,
        "clawed_back_amount": cashback.clawed_back_amount,
        "currency": cashback.currency,
        "wallet_id": format_public_id("wal", cashback.wallet_id),
        "source_id": cashback.source_id,
        "rule_id": format_public_id("rule", cashback.rule_id),
        "created_at": to_rfc3339(cashback.created_at),
        "updated_at": to_rfc3339(cashback.updated_at),
    }


def pool_view(account: Account) -> PoolOut:
    return PoolOut(
        currency=account.currency,
        account_id=str(account.id),
        balance=account.balance,
        credits_posted=account.credits_posted,
        debits_posted=account.debits_posted,
    )
