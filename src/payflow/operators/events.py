"""What operators' actions tell the rest of PayFlow (docs/events.md)."""

from __future__ import annotations

import uuid
from typing import Any, Final

from payflow.events.domain import Event, derived_event_id
from payflow.ids import format_public_id

ADJUSTMENT_POSTED: Final = "adjustment.posted"


def adjustment_posted(
    transfer_id: uuid.UUID, body: dict[str, Any], *, user_id: uuid.UUID, at: int
) -> Event:
    """An operator credited or debited a wallet; `data` is the adjustment plus its owner."""
    return Event(
        id=derived_event_id(transfer_id, ADJUSTMENT_POSTED),
        type=ADJUSTMENT_POSTED,
        aggregate_type="adjustment",
        aggregate_id=body["id"],
        occurred_at=at,
        data={**body, "user_id": format_public_id("usr", user_id)},
    )
