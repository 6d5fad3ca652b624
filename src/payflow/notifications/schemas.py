"""Notifications' response bodies (the routes take no request bodies)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from payflow.ids import format_public_id
from payflow.notifications.domain import Notification
from payflow.timestamps import to_rfc3339


class NotificationOut(BaseModel):
    id: str = Field(examples=["ntf_5f0c2a4e7d7b4c369a553b0e7e1f0c11"])
    object: Literal["notification"] = "notification"
    type: str = Field(description="The event it tells of", examples=["transfer.completed"])
    title: str
    body: str
    event_id: str = Field(description="The event's id in the event feed")
    created_at: str = Field(description="When the event happened")
    read_at: str | None

    @classmethod
    def of(cls, notification: Notification) -> NotificationOut:
        read_at = notification.read_at
        return cls(
            id=format_public_id("ntf", notification.id),
            type=notification.event_type,
            title=notification.title,
            body=notification.body,
            event_id=f"evt_{notification.event_id.hex}",
            created_at=to_rfc3339(notification.created_at),
            read_at=to_rfc3339(read_at) if read_at is not None else None,
        )


class NotificationPage(BaseModel):
    data: list[NotificationOut]
    next_cursor: str | None
    unread_count: int = Field(description="All the caller's unread notifications")


class ReadAllOut(BaseModel):
    marked_read: int = Field(description="How many were unread and are now read")
    unread_count: int = Field(description="Unread after the call (new ones may have come)")
