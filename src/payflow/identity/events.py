"""What identity tells the rest of PayFlow (docs/events.md)."""

from __future__ import annotations

from typing import Final

from payflow.events.domain import Event, derived_event_id
from payflow.identity.domain import User
from payflow.ids import format_public_id

USER_REGISTERED: Final = "user.registered"


def user_registered(user: User) -> Event:
    """A user has registered. No e-mail in the event: consumers that need it ask identity."""
    public_id = format_public_id("usr", user.id)
    return Event(
        id=derived_event_id(user.id, USER_REGISTERED),
        type=USER_REGISTERED,
        aggregate_type="user",
        aggregate_id=public_id,
        occurred_at=user.created_at,
        data={
            "user_id": public_id,
            "name": user.name,
            "handle": user.handle,
            "role": user.role.value,
        },
    )
