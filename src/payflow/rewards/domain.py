"""Rewards' rules: cashback rules, how much a payment earns, how much a refund takes back.

Pure: no I/O. Money is integer minor units; rates are basis points (1 bp = 0.01 %), so
every calculation is integer arithmetic that rounds down, in PayFlow's favour by at most
one minor unit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

BASIS_POINTS: Final = 10_000
RATE_BP_MIN: Final = 1
RATE_BP_MAX: Final = BASIS_POINTS
_NAMESPACE: Final = uuid.UUID("5b0e6c1d-8a3f-4e27-9d14-7c2b9f0a6e53")

PAID: Final = "paid"
PARTIALLY_CLAWED_BACK: Final = "partially_clawed_back"
CLAWED_BACK: Final = "clawed_back"
STATUSES: Final = (PAID, PARTIALLY_CLAWED_BACK, CLAWED_BACK)


class PoolExhausted(Exception):
    """The rewards pool cannot cover a cashback: retried, then parked until it is funded."""


class LedgerRefused(Exception):
    """The ledger refused a rewards transfer for a reason a retry may resolve (a wallet
    spent between reading its balance and the transfer) or an operator must look at."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Cashback of `rate_bp` of a payment, at most `cap_amount`, for payments of at least
    `minimum_amount` in `currency`; at one merchant, or at every merchant if None."""

    id: uuid.UUID
    name: str | None
    currency: str
    rate_bp: int
    cap_amount: int
    minimum_amount: int
    merchant_id: uuid.UUID | None
    active: bool
    created_by: uuid.UUID
    created_at: int
    updated_at: int

    def __post_init__(self) -> None:
        assert RATE_BP_MIN <= self.rate_bp <= RATE_BP_MAX, self.rate_bp
        assert self.cap_amount > 0, self.cap_amount
        assert self.minimum_amount >= 0, self.minimum_amount


@dataclass(frozen=True, slots=True)
class Purchase:
    """A payment by a customer to a merchant, as an event reported it."""

    source_id: str
    payer_id: uuid.UUID
    payer_wallet_id: uuid.UUID
    merchant_id: uuid.UUID
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Refund:
    """Money given back on a payment; `payment_amount` is what the payment took."""

    source_id: str
    refund_id: str
    amount: int
    payment_amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Cashback:
    """A paid cashback. `refunded_amount` sums the refunds of its payment so far; of the
    cashback, `clawed_back_amount` came back and `shortfall_amount` was due but could not
    be taken (written off)."""

    id: uuid.UUID
    event_id: uuid.UUID
    source_id: str
    rule_id: uuid.UUID
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    amount: int
    currency: str
    payment_amount: int
    refunded_amount: int
    clawed_back_amount: int
    shortfall_amount: int
    status: str
    created_at: int
    updated_at: int

    def __post_init__(self) -> None:
        assert self.amount > 0 and self.payment_amount > 0
        assert 0 <= self.refunded_amount <= self.payment_amount
        assert self.clawed_back_amount >= 0 and self.shortfall_amount >= 0
        assert self.clawed_back_amount + self.shortfall_amount <= self.amount
        assert self.status == status_of(self.amount, self.clawed_back_amount), self.status

    @classmethod
    def paid(
        cls, purchase: Purchase, *, event_id: uuid.UUID, rule_id: uuid.UUID, amount: int, at: int
    ) -> Cashback:
        """The cashback `purchase` earned, just paid (its id is the ledger transfer's)."""
        return cls(
            id=cashback_id_for(event_id),
            event_id=event_id,
            source_id=purchase.source_id,
            rule_id=rule_id,
            user_id=purchase.payer_id,
            wallet_id=purchase.payer_wallet_id,
            amount=amount,
            currency=purchase.currency,
            payment_amount=purchase.amount,
            refunded_amount=0,
            clawed_back_amount=0,
            shortfall_amount=0,
            status=PAID,
            created_at=at,
            updated_at=at,
        )


@dataclass(frozen=True, slots=True)
class Clawback:
    """What one refund took back. `cashback_id` is None while the refund waits for a
    cashback not paid yet (one parked until the pool is funded); `due_amount` splits into
    `amount` (taken) and `shortfall_amount` (written off)."""

    id: uuid.UUID
    event_id: uuid.UUID
    source_id: str
    refund_id: str
    cashback_id: uuid.UUID | None
    currency: str
    refunded_amount: int
    due_amount: int
    amount: int
    shortfall_amount: int
    created_at: int
    applied_at: int | None

    @classmethod
    def recorded(cls, refund: Refund, *, event_id: uuid.UUID, at: int) -> Clawback:
        """A refund just heard of, not yet applied to any cashback."""
        return cls(
            id=clawback_id_for(event_id),
            event_id=event_id,
            source_id=refund.source_id,
            refund_id=refund.refund_id,
            cashback_id=None,
            currency=refund.currency,
            refunded_amount=refund.amount,
            due_amount=0,
            amount=0,
            shortfall_amount=0,
            created_at=at,
            applied_at=None,
        )


def cashback_for(rule: Rule, amount: int) -> int:
    """The cashback `rule` gives on a payment of `amount`: 0 below its minimum."""
    if not rule.active or amount < rule.minimum_amount:
        return 0
    return min(rule.cap_amount, amount * rule.rate_bp // BASIS_POINTS)


def best_rule(
    rules: Iterable[Rule], *, merchant_id: uuid.UUID, currency: str, amount: int
) -> tuple[Rule, int] | None:
    """The rule that pays a payment to `merchant_id`, and how much.

    The merchant's own rules come first; only if none of them pays anything do rules for
    every merchant apply. Within a tier the most cashback wins; a tie goes to the oldest.
    """
    tiers: tuple[list[tuple[Rule, int]], list[tuple[Rule, int]]] = ([], [])
    for rule in rules:
        if rule.currency != currency or rule.merchant_id not in (merchant_id, None):
            continue
        cashback = cashback_for(rule, amount)
        if cashback > 0:
            tiers[0 if rule.merchant_id == merchant_id else 1].append((rule, cashback))
    for tier in tiers:
        if tier:
            return min(tier, key=lambda found: (-found[1], found[0].created_at, found[0].id))
    return None


def clawback_due(
    *, cashback_amount: int, payment_amount: int, refunded_total: int, settled_amount: int
) -> int:
    """What a refund takes back of a cashback, given all refunds so far (this one too).

    Proportional and cumulative: after refunds totalling `refunded_total`, the share
    `cashback * refunded_total // payment_amount` is owed back, less what earlier refunds
    settled (taken or written off). Computing on the total rather than per refund makes
    refunds that add up to the whole payment take back the whole cashback, exactly.
    """
    assert cashback_amount > 0 and payment_amount > 0 and refunded_total >= 0
    assert 0 <= settled_amount <= cashback_amount
    refunded = min(refunded_total, payment_amount)
    return max(0, cashback_amount * refunded // payment_amount - settled_amount)


def status_of(amount: int, clawed_back_amount: int) -> str:
    if clawed_back_amount == 0:
        return PAID
    return CLAWED_BACK if clawed_back_amount == amount else PARTIALLY_CLAWED_BACK


def apply_refund(
    cashback: Cashback, clawback: Clawback, *, available: int, at: int
) -> tuple[Cashback, Clawback]:
    """The cashback and the clawback after `clawback`'s refund: what is due is taken from
    the `available` balance of the wallet, and what it cannot cover is written off."""
    assert clawback.cashback_id is None and clawback.currency == cashback.currency
    refunded_total = min(
        cashback.refunded_amount + clawback.refunded_amount, cashback.payment_amount
    )
    due = clawback_due(
        cashback_amount=cashback.amount,
        payment_amount=cashback.payment_amount,
        refunded_total=refunded_total,
        settled_amount=cashback.clawed_back_amount + cashback.shortfall_amount,
    )
    taken = min(due, max(available, 0))
    clawed_back = cashback.clawed_back_amount + taken
    return (
        replace(
            cashback,
            refunded_amount=refunded_total,
            clawed_back_amount=clawed_back,
            shortfall_amount=cashback.shortfall_amount + due - taken,
            status=status_of(cashback.amount, clawed_back),
            updated_at=at,
        ),
        replace(
            clawback,
            cashback_id=cashback.id,
            due_amount=due,
            amount=taken,
            shortfall_amount=due - taken,
            applied_at=at,
        ),
    )


def cashback_id_for(event_id: uuid.UUID) -> uuid.UUID:
    """The cashback (and its ledger transfer) a payment event causes: one per event."""
    return uuid.uuid5(_NAMESPACE, f"cashback:{event_id}")


def clawback_id_for(event_id: uuid.UUID) -> uuid.UUID:
    """The clawback (and its ledger transfer) a refund event causes: one per event."""
    return uuid.uuid5(_NAMESPACE, f"clawback:{event_id}")
