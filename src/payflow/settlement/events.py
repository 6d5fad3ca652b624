"""What settlement tells the rest of PayFlow: a settlement was made, paid, or failed.

`data` is the settlement as `GET /v1/settlements/{id}` shows it without its lines; it
includes `merchant_user_id`, so webhooks and notifications know whom it concerns. Each
event's id is derived from (settlement, type): written once, however often retried.
"""

from __future__ import annotations

from typing import Final

from payflow.events.domain import Event, derived_event_id
from payflow.settlement.domain import Settlement
from payflow.settlement.views import public_id, settlement_view

SETTLEMENT_CREATED: Final = "settlement.created"
SETTLEMENT_PAID: Final = "settlement.paid"
SETTLEMENT_FAILED: Final = "settlement.failed"


def settlement_event(settlement: Settlement, event_type: str) -> Event:
    assert event_type in (SETTLEMENT_CREATED, SETTLEMENT_PAID, SETTLEMENT_FAILED), event_type
    return Event(
        id=derived_event_id(settlement.id, event_type),
        type=event_type,
        aggregate_type="settlement",
        aggregate_id=public_id(settlement),
        occurred_at=settlement.updated_at,
        data=settlement_view(settlement),
    )
