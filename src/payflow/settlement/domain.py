"""Settlement's rules: what a settlement is, how its lines and fee are computed, and the
ids derived from it. Pure, no I/O.

A settlement pays one merchant, in one currency, for a batch of its succeeded payments:
one line per payment, `net = amount - refunded - fee`, and the settlement's net (the sum)
is paid to the merchant's bank through the payouts saga. The fee goes to PayFlow's FEES
account when the settlement is made, and comes back if its payout fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

BPS_PER_UNIT: Final = 10_000


class SettlementStatus(StrEnum):
    """`processing` until its payout's saga ends; then `paid` or `failed`."""

    PROCESSING = "processing"
    PAID = "paid"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Item:
    """A succeeded payment settlement has heard of, as far as settlement needs it."""

    payment_id: uuid.UUID
    amount: int
    refunded_amount: int
    succeeded_at: int


@dataclass(frozen=True, slots=True)
class Line:
    payment_id: uuid.UUID
    amount: int
    refunded_amount: int
    fee_amount: int
    net_amount: int
    succeeded_at: int


def fee_of(amount: int, refunded_amount: int, *, fee_bps: int) -> int:
    """`amount * fee_bps // 10_000`, rounded down (in the merchant's favour), and never more
    than what the merchant kept: a line's net is never negative."""
    assert 0 <= fee_bps <= BPS_PER_UNIT, fee_bps
    assert 0 <= refunded_amount <= amount, (refunded_amount, amount)
    return min(amount * fee_bps // BPS_PER_UNIT, amount - refunded_amount)


def line_of(item: Item, *, fee_bps: int) -> Line:
    fee = fee_of(item.amount, item.refunded_amount, fee_bps=fee_bps)
    return Line(
        payment_id=item.payment_id,
        amount=item.amount,
        refunded_amount=item.refunded_amount,
        fee_amount=fee,
        net_amount=item.amount - item.refunded_amount - fee,
        succeeded_at=item.succeeded_at,
    )


@dataclass(frozen=True, slots=True)
class Totals:
    line_count: int
    gross_amount: int
    refunded_amount: int
    fee_amount: int
    net_amount: int


def totals_of(lines: Sequence[Line]) -> Totals:
    totals = Totals(
        line_count=len(lines),
        gross_amount=sum(line.amount for line in lines),
        refunded_amount=sum(line.refunded_amount for line in lines),
        fee_amount=sum(line.fee_amount for line in lines),
        net_amount=sum(line.net_amount for line in lines),
    )
    assert totals.net_amount == (
        totals.gross_amount - totals.refunded_amount - totals.fee_amount
    ), totals
    return totals


@dataclass(frozen=True, slots=True)
class Settlement:
    """One settlement as stored."""

    id: uuid.UUID
    merchant_id: uuid.UUID
    merchant_user_id: uuid.UUID
    wallet_id: uuid.UUID
    currency: str
    period_start: int
    period_end: int
    line_count: int
    gross_amount: int
    refunded_amount: int
    fee_amount: int
    net_amount: int
    status: SettlementStatus
    failure_reason: str | None
    payout_id: uuid.UUID
    created_at: int
    updated_at: int


def payout_id_of(settlement_id: uuid.UUID) -> uuid.UUID:
    """The payout that pays the settlement: derived, so it is started once."""
    return uuid.uuid5(settlement_id, "payout")


def fee_transfer_id(settlement_id: uuid.UUID) -> uuid.UUID:
    """The posted ledger transfer that takes the fee (merchant wallet → FEES)."""
    return uuid.uuid5(settlement_id, "fee")


def fee_reversal_id(settlement_id: uuid.UUID) -> uuid.UUID:
    """The transfer that gives a failed settlement's fee back (FEES → merchant wallet)."""
    return uuid.uuid5(settlement_id, "fee-reversal")


def next_run_at(now: int, *, interval_s: int, batch_full: bool) -> int:
    """When the merchant is settled next: after its interval, or at once when this
    settlement had to leave payments out (its batch was full)."""
    return now if batch_full else now + interval_s * 1_000_000_000
