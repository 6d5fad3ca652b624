"""What rewards hears and tells (docs/rewards.md, "Events").

Heard — `data` contracts the producers keep:

`transfer.completed` (transfers/events.py): kinds `p2p` and `capture` whose `to.user_id`
is a merchant and whose `from.user_id` is not earn cashback into `from.wallet_id`.

`payment.succeeded` (payments; one per payment, once the money is the merchant's)::

    {"payment_id": "pay_…",            # the cashback's source id
     "amount": 10000,                   # int minor units, what the customer paid
     "currency": "INR",
     "customer_user_id": "usr_…", "customer_wallet_id": "wal_…",
     "merchant_user_id": "usr_…", "merchant_wallet_id": "wal_…"}

A payment must not also be reported as a `transfer.completed` of kind `p2p`/`capture`:
that would be a second source for the same money.

`payment.refunded` (payments; one per refund, full or partial)::

    {"refund_id": "re_…",
     "payment_id": "pay_…",             # or "transfer_id": "txn_…" for a transfer
     "amount": 2500,                    # int minor units refunded by this refund
     "payment_amount": 10000,           # what the payment took (informational: the
     "currency": "INR"}                 # cashback keeps its own copy)

Told: `cashback.paid` and `cashback.clawed_back` (below).

A malformed event raises `MalformedEvent`: the runner retries it, then parks it where an
operator sees it, rather than rewards quietly skipping money it owes or is owed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

from payflow.errors import PayFlowError
from payflow.events.domain import Event, derived_event_id
from payflow.ids import format_public_id, parse_public_id
from payflow.money import is_amount, is_currency
from payflow.rewards.domain import Cashback, Clawback, Purchase, Refund
from payflow.transfers.events import TRANSFER_COMPLETED

PAYMENT_SUCCEEDED: Final = "payment.succeeded"
PAYMENT_REFUNDED: Final = "payment.refunded"
CASHBACK_PAID: Final = "cashback.paid"
CASHBACK_CLAWED_BACK: Final = "cashback.clawed_back"
POOL_FUNDED: Final = "rewards_pool.funded"
# Transfers that pay someone; top-ups do not.
_PAYING_KINDS: Final = frozenset({"p2p", "capture"})
SOURCE_ID_LENGTH_MAX: Final = 64


class MalformedEvent(ValueError):
    """An event rewards subscribes to does not keep its `data` contract."""


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= SOURCE_ID_LENGTH_MAX:
        raise MalformedEvent(f"`{name}` must be a string of 1-{SOURCE_ID_LENGTH_MAX} characters")
    return value


def _id(data: Mapping[str, Any], name: str, prefix: str) -> uuid.UUID:
    try:
        return parse_public_id(prefix, _text(data, name))
    except PayFlowError as error:
        raise MalformedEvent(f"`{name}`: {error.message}") from None


def _amount(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if not is_amount(value):
        raise MalformedEvent(f"`{name}` must be an integer amount in minor units")
    assert isinstance(value, int)
    return value


def _currency(data: Mapping[str, Any]) -> str:
    value = data.get("currency")
    if not is_currency(value):
        raise MalformedEvent("`currency` must be an ISO 4217 code")
    assert isinstance(value, str)
    return value


def purchase_of(event: Event) -> Purchase | None:
    """The payment `event` reports, or None if it reports no payment between two users."""
    data = event.data
    if event.type == PAYMENT_SUCCEEDED:
        return Purchase(
            source_id=_text(data, "payment_id"),
            payer_id=_id(data, "customer_user_id", "usr"),
            payer_wallet_id=_id(data, "customer_wallet_id", "wal"),
            merchant_id=_id(data, "merchant_user_id", "usr"),
            amount=_amount(data, "amount"),
            currency=_currency(data),
        )
    assert event.type == TRANSFER_COMPLETED, event.type
    payer, payee = data.get("from"), data.get("to")
    if data.get("kind") not in _PAYING_KINDS or not isinstance(payer, dict):
        return None
    if not isinstance(payee, dict) or "user_id" not in payee or "user_id" not in payer:
        return None
    return Purchase(
        source_id=_text(data, "id"),
        payer_id=_id(payer, "user_id", "usr"),
        payer_wallet_id=_id(payer, "wallet_id", "wal"),
        merchant_id=_id(payee, "user_id", "usr"),
        amount=_amount(data, "amount"),
        currency=_currency(data),
    )


def refund_of(event: Event) -> Refund:
    """The refund a `payment.refunded` event reports."""
    assert event.type == PAYMENT_REFUNDED, event.type
    data = event.data
    source = "payment_id" if "payment_id" in data else "transfer_id"
    return Refund(
        source_id=_text(data, source),
        refund_id=_text(data, "refund_id"),
        amount=_amount(data, "amount"),
        payment_amount=_amount(data, "payment_amount"),
        currency=_currency(data),
    )


def _money(cashback: Cashback) -> dict[str, Any]:
    return {
        "cashback_id": format_public_id("cbk", cashback.id),
        "user_id": format_public_id("usr", cashback.user_id),
        "wallet_id": format_public_id("wal", cashback.wallet_id),
        "currency": cashback.currency,
        "source_id": cashback.source_id,
    }


def cashback_paid(cashback: Cashback) -> Event:
    """Cashback landed in a wallet."""
    return Event(
        id=derived_event_id(cashback.id, CASHBACK_PAID),
        type=CASHBACK_PAID,
        aggregate_type="cashback",
        aggregate_id=format_public_id("cbk", cashback.id),
        occurred_at=cashback.created_at,
        data={
            **_money(cashback),
            "amount": cashback.amount,
            "rule_id": format_public_id("rule", cashback.rule_id),
        },
    )


def cashback_clawed_back(cashback: Cashback, clawback: Clawback) -> Event:
    """A refund took back (part of) a cashback: `amount` was taken from the wallet and
    `shortfall_amount` of what was due could not be (the wallet had spent it)."""
    assert clawback.applied_at is not None
    return Event(
        id=derived_event_id(clawback.id, CASHBACK_CLAWED_BACK),
        type=CASHBACK_CLAWED_BACK,
        aggregate_type="cashback",
        aggregate_id=format_public_id("cbk", cashback.id),
        occurred_at=clawback.applied_at,
        data={
            **_money(cashback),
            "clawback_id": format_public_id("clb", clawback.id),
            "refund_id": clawback.refund_id,
            "amount": clawback.amount,
            "due_amount": clawback.due_amount,
            "shortfall_amount": clawback.shortfall_amount,
            "status": cashback.status,
        },
    )


def pool_funded(transfer_id: uuid.UUID, body: dict[str, Any], *, at: int) -> Event:
    """An operator put money into a rewards pool; `data` is the funding as the API shows it."""
    return Event(
        id=derived_event_id(transfer_id, POOL_FUNDED),
        type=POOL_FUNDED,
        aggregate_type="rewards_pool",
        aggregate_id=body["currency"],
        occurred_at=at,
        data=body,
    )
