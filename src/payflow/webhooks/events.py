"""What webhooks emits: `webhook_endpoint.disabled`, which notifications turns into an
inbox entry and an e-mail for the endpoint's owner (and other endpoints deliver)."""

from __future__ import annotations

from typing import Final

from payflow.events.domain import Event, derived_event_id
from payflow.ids import format_public_id
from payflow.timestamps import to_rfc3339
from payflow.webhooks.domain import Endpoint

ENDPOINT_DISABLED: Final = "webhook_endpoint.disabled"


def endpoint_disabled(endpoint: Endpoint, *, reason: str, at: int) -> Event:
    """The event for `endpoint` disabled at `at` for `reason` (`gone` or `failing`).
    Its id is derived from the endpoint and the moment, so each disabling is one event."""
    public_id = format_public_id("we", endpoint.id)
    return Event(
        id=derived_event_id(f"{endpoint.id}:{at}", ENDPOINT_DISABLED),
        type=ENDPOINT_DISABLED,
        aggregate_type="webhook_endpoint",
        aggregate_id=public_id,
        occurred_at=at,
        data={
            "id": public_id,
            "object": "webhook_endpoint",
            "user_id": format_public_id("usr", endpoint.owner_id),
            "url": endpoint.url,
            "reason": reason,
            "disabled_at": to_rfc3339(at),
            "failing_since": (
                to_rfc3339(endpoint.failing_since) if endpoint.failing_since is not None else None
            ),
        },
    )
