"""Webhooks' types and rules: ids, secrets, Standard Webhooks signatures, audiences,
retry waits. No I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from payflow.errors import PayFlowError
from payflow.ids import format_public_id, parse_public_id

# Message ids are derived from (endpoint, event): an event delivered twice to the
# consumer queues the same message, and receivers see the same `webhook-id` on every
# retry and replay.
_NAMESPACE: Final = uuid.UUID("3c9d7e21-5b8a-4f06-8e43-a1d2c6b0f975")

ENABLED: Final = "enabled"
DISABLED: Final = "disabled"
# Why an endpoint is disabled: it answered 410 Gone, it kept failing, or its owner chose to.
GONE: Final = "gone"
FAILING: Final = "failing"
OWNER: Final = "owner"

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
DELIVERY_STATUSES: Final = (PENDING, DELIVERED, FAILED, CANCELLED)

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a format prefix, not a secret)
# Standard Webhooks: 24 to 64 random bytes. PayFlow issues 32.
SECRET_BYTES: Final = 32
URL_LENGTH_MAX: Final = 2048
DESCRIPTION_LENGTH_MAX: Final = 500
ERROR_LENGTH_MAX: Final = 1000
EXCERPT_LENGTH_MAX: Final = 1000
# ±20 % around each wait of the schedule, so that deliveries failing together (an
# endpoint's outage) do not all come back in the same instant.
JITTER: Final = 0.2
# How deep the audience search looks below `data` (the producers' contract).
AUDIENCE_DEPTH: Final = 2
NS_PER_S: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as stored. `event_types` is its filter (`["*"]`: every listed type)."""

    id: uuid.UUID
    owner_id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    status: str
    disabled_reason: str | None
    disabled_at: int | None
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: int | None
    failing_since: int | None
    failed_deliveries: int
    created_at: int
    updated_at: int

    def signing_secrets(self, now: int) -> list[str]:
        """The secrets deliveries are signed with at `now`: the current one, and during a
        rotation's overlap the one it replaced."""
        keys = [self.secret]
        expires_at = self.previous_secret_expires_at
        if self.previous_secret is not None and expires_at is not None and now < expires_at:
            keys.append(self.previous_secret)
        return keys


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event's message to one endpoint, as stored (without its payload)."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    occurred_at: int
    status: str
    attempts: int
    round_attempts: int
    next_attempt_at: int
    last_attempt_at: int | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: int | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt at a delivery, as recorded."""

    id: uuid.UUID
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    attempted_at: int
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None


def message_id(endpoint_id: uuid.UUID, event_id: uuid.UUID) -> uuid.UUID:
    """The delivery's id, shown as `msg_…` in `webhook-id`."""
    return uuid.uuid5(_NAMESPACE, f"message:{endpoint_id}:{event_id}")


def public_message_id(delivery_id: uuid.UUID) -> str:
    return format_public_id("msg", delivery_id)


def new_secret() -> str:
    """A fresh `whsec_…` signing secret (Standard Webhooks format)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_…` secret."""
    assert secret.startswith(SECRET_PREFIX), "not a whsec_ secret"
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def signature_header(
    msg_id: str, timestamp_s: int, body: bytes, signing_secrets: Sequence[str]
) -> str:
    """`webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per secret,
    space-separated (Standard Webhooks), so a receiver holding either secret of a
    rotation's overlap can verify."""
    assert signing_secrets, "a delivery is signed with at least one secret"
    content = f"{msg_id}.{timestamp_s}.".encode() + body
    signatures = []
    for secret in signing_secrets:
        digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return " ".join(signatures)


def payload(event_id: uuid.UUID, event_type: str, timestamp: str, data: Mapping[str, Any]) -> str:
    """The body every attempt at a delivery sends, byte for byte."""
    body = {"id": f"evt_{event_id.hex}", "type": event_type, "timestamp": timestamp, "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _is_audience_key(key: object) -> bool:
    return isinstance(key, str) and (key == "user_id" or key.endswith("_user_id"))


def _user_id(value: object) -> uuid.UUID | None:
    if not isinstance(value, str) or not value.startswith("usr_"):
        return None
    try:
        return parse_public_id("usr", value)
    except PayFlowError:
        return None


def audience(data: Mapping[str, Any]) -> set[uuid.UUID]:
    """The users an event concerns: `usr_…` values of keys named `user_id` or ending in
    `_user_id`, in `data` and in the objects and lists up to two levels below it."""
    found: set[uuid.UUID] = set()

    def visit(value: object, depth: int) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if _is_audience_key(key):
                    user = _user_id(item)
                    if user is not None:
                        found.add(user)
                elif depth < AUDIENCE_DEPTH:
                    visit(item, depth + 1)
        elif isinstance(value, list) and depth <= AUDIENCE_DEPTH:
            # A list is a container, not a level: its objects sit at the list's depth.
            for item in value:
                if isinstance(item, Mapping):
                    visit(item, depth)

    visit(data, 0)
    return found


def retry_wait_s(round_attempts: int, schedule_s: Sequence[float]) -> float:
    """How long to wait after the `round_attempts`-th failed attempt of a round: the
    schedule's wait for that attempt (its last repeats), with jitter."""
    assert round_attempts >= 1 and schedule_s
    wait = schedule_s[min(round_attempts - 1, len(schedule_s) - 1)]
    return wait * random.uniform(1 - JITTER, 1 + JITTER)


def clip(text: str, length_max: int) -> str:
    """`text` cut to `length_max` characters (an ellipsis marks the cut)."""
    return text if len(text) <= length_max else text[: length_max - 1] + "…"
