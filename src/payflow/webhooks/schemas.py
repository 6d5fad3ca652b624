"""Webhooks' request and response bodies, and how endpoints and deliveries look on the
wire."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from payflow.api.schemas import StrictModel
from payflow.ids import format_public_id
from payflow.timestamps import now_ns, to_rfc3339
from payflow.webhooks.catalogue import EVENT_TYPES
from payflow.webhooks.domain import (
    DESCRIPTION_LENGTH_MAX,
    PENDING,
    URL_LENGTH_MAX,
    Attempt,
    Delivery,
    Endpoint,
    public_message_id,
)

OVERLAP_S_MAX = 7 * 86_400
OVERLAP_S_DEFAULT = 86_400

Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=URL_LENGTH_MAX,
        description="Where deliveries are POSTed: https:// (or http://), a public address",
        examples=["https://example.com/payflow/webhooks"],
    ),
]
EventTypes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(
        min_length=1,
        max_length=len(EVENT_TYPES) + 1,
        description='Event types from the catalogue (docs/webhooks.md), or `["*"]` for all',
        examples=[["transfer.completed", "hold.captured"]],
    ),
]
Description = Annotated[str, Field(max_length=DESCRIPTION_LENGTH_MAX)]
Timestamp = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        description="RFC 3339 with a time zone",
        examples=["2026-11-22T02:30:00Z"],
    ),
]


class EndpointBody(StrictModel):
    url: Url
    event_types: EventTypes
    description: Description | None = None


class EndpointPatch(StrictModel):
    """Only the fields given change; `description: null` clears it; `enabled: true`
    enables a disabled endpoint again."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None


class RotateBody(StrictModel):
    overlap_s: int = Field(
        default=OVERLAP_S_DEFAULT,
        strict=True,
        ge=0,
        le=OVERLAP_S_MAX,
        description="How long the old secret keeps signing too (0: not at all)",
    )


class ReplayRangeBody(StrictModel):
    since: Timestamp
    until: Timestamp


class EndpointOut(BaseModel):
    id: str
    object: Literal["webhook_endpoint"]
    owner_id: str
    url: str
    description: str | None
    event_types: list[str]
    status: Literal["enabled", "disabled"]
    disabled_reason: Literal["gone", "failing", "owner"] | None
    disabled_at: str | None
    previous_secret_expires_at: str | None = Field(
        description="Until when the secret before the last rotation signs too (null: none)"
    )
    created_at: str
    updated_at: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret, `whsec_…`; shown only now")


class EndpointPage(BaseModel):
    data: list[EndpointOut]
    next_cursor: str | None


class SecretOut(BaseModel):
    endpoint_id: str
    object: Literal["webhook_secret"]
    secret: str = Field(description="The new signing secret, `whsec_…`; shown only now")
    previous_secret_expires_at: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The message id, sent as `webhook-id` on every attempt")
    object: Literal["webhook_delivery"]
    endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempt_count: int
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str
    updated_at: str


class AttemptOut(BaseModel):
    attempted_at: str
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any] = Field(description="The body every attempt sends")
    attempts: list[AttemptOut] = Field(description="Newest first, at most 200")


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


class ReplayOut(BaseModel):
    replayed: int = Field(description="How many deliveries will be sent again")


def _time(ns: int | None) -> str | None:
    return to_rfc3339(ns) if ns is not None else None


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    expires_at = endpoint.previous_secret_expires_at
    return {
        "id": format_public_id("we", endpoint.id),
        "object": "webhook_endpoint",
        "owner_id": format_public_id("usr", endpoint.owner_id),
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": _time(endpoint.disabled_at),
        "previous_secret_expires_at": (
            _time(expires_at) if expires_at is not None and expires_at > now_ns() else None
        ),
        "created_at": to_rfc3339(endpoint.created_at),
        "updated_at": to_rfc3339(endpoint.updated_at),
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    pending = delivery.status == PENDING
    return {
        "id": public_message_id(delivery.id),
        "object": "webhook_delivery",
        "endpoint_id": format_public_id("we", delivery.endpoint_id),
        "event_id": f"evt_{delivery.event_id.hex}",
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempt_count": delivery.attempts,
        "next_attempt_at": _time(delivery.next_attempt_at) if pending else None,
        "last_attempt_at": _time(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "delivered_at": _time(delivery.delivered_at),
        "created_at": to_rfc3339(delivery.created_at),
        "updated_at": to_rfc3339(delivery.updated_at),
    }


def detail_view(delivery: Delivery, payload: str, attempts: list[Attempt]) -> dict[str, Any]:
    return {
        **delivery_view(delivery),
        "payload": json.loads(payload),
        "attempts": [
            {
                "attempted_at": to_rfc3339(a.attempted_at),
                "duration_ms": a.duration_ms,
                "status_code": a.status_code,
                "error": a.error,
                "response_excerpt": a.response_excerpt,
            }
            for a in attempts
        ],
    }
