"""The event types webhooks deliver: a fixed, documented list (docs/webhooks.md).

An endpoint subscribes to some of these, or to all with `["*"]`; a type not listed here
is refused (422), so a typo never makes an endpoint that silently gets nothing. A type is
listed only when its `data` names its audience as the contract below says.

Audience contract (producers keep it): an event reaches the endpoints of the users whose
public ids (`usr_…`) are the values of keys named `user_id` or ending in `_user_id`, at
the top of `data` or inside objects and lists nested up to two levels below it.
"""

from __future__ import annotations

from typing import Final

from payflow.errors import PayFlowError

WILDCARD: Final = "*"

# Type → what it reports. Payment, payout and settlement types are those their contexts
# emit; the payout saga keeps the seed's upper-case names.
EVENT_TYPES: Final[dict[str, str]] = {
    "transfer.completed": "A P2P transfer, top-up or hold capture committed",
    "hold.created": "Money was put on hold in a wallet",
    "hold.captured": "A hold was captured (in full or in part)",
    "hold.released": "A hold was released or expired",
    "wallet.opened": "A wallet opened",
    "cashback.paid": "Cashback was paid into a wallet",
    "cashback.clawed_back": "Cashback was taken back after a refund",
    "payment.initiated": "A merchant payment was created",
    "payment.succeeded": "A merchant payment succeeded",
    "payment.failed": "A merchant payment failed",
    "payment.refunded": "A merchant payment was refunded (in full or in part)",
    "TRANSACTION_INITIATED": "A payout started",
    "DEBIT_SUCCESS": "A payout's debit was placed",
    "DEBIT_FAILED": "A payout's debit failed",
    "CREDIT_SUCCESS": "The partner bank credited a payout",
    "CREDIT_FAILED": "The partner bank refused a payout",
    "REFUND_REQUESTED": "A failed payout's debit is being returned",
    "REFUND_COMPLETED": "A failed payout's debit was returned",
    "TRANSACTION_COMPLETED": "A payout completed",
    "TRANSACTION_FAILED": "A payout failed (its money returned)",
    "settlement.created": "A merchant settlement was created",
    "settlement.paid": "A merchant settlement was paid out",
    "settlement.failed": "A merchant settlement's payout failed",
    "webhook_endpoint.disabled": "One of the owner's webhook endpoints was disabled",
}


def unknown_types(event_types: list[str]) -> list[str]:
    """The entries of an endpoint's filter that are neither listed types nor `*`."""
    return [t for t in event_types if t != WILDCARD and t not in EVENT_TYPES]


def subscribes(event_types: list[str], event_type: str) -> bool:
    """True when an endpoint with filter `event_types` gets events of `event_type`."""
    if event_type not in EVENT_TYPES:
        return False
    return WILDCARD in event_types or event_type in event_types


def normalize(event_types: list[str]) -> list[str]:
    """An endpoint's filter as stored: listed types without repeats, or `["*"]` when it
    has the wildcard. Unknown types are a 422 `event_types_invalid` naming them."""
    unknown = unknown_types(event_types)
    if unknown:
        raise PayFlowError(
            "event_types_invalid",
            f"unknown event types {', '.join(repr(t) for t in unknown[:10])}; "
            'see the catalogue in docs/webhooks.md, or use ["*"]',
            http_status=422,
        )
    if WILDCARD in event_types:
        return [WILDCARD]
    return list(dict.fromkeys(event_types))
