"""Webhooks' tables: endpoints, one delivery per (endpoint, event), and every attempt."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)

metadata = MetaData()

# `secret` must be readable to sign with (HMAC), so it is stored as issued; during a
# rotation's overlap the one it replaced signs too, until `previous_secret_expires_at`.
# `failing_since` is the first failed attempt after the last success (NULL while
# deliveries succeed); `failed_deliveries` counts deliveries given up on since then.
endpoints = Table(
    "webhooks_endpoints",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("owner_id", Uuid, nullable=False),
    Column("url", String(2048), nullable=False),
    Column("description", String(500), nullable=True),
    # A JSON list of event types, or ["*"].
    Column("event_types", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("disabled_reason", String(16), nullable=True),
    Column("disabled_at", BigInteger, nullable=True),
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100), nullable=True),
    Column("previous_secret_expires_at", BigInteger, nullable=True),
    Column("failing_since", BigInteger, nullable=True),
    Column("failed_deliveries", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger, nullable=True),
    CheckConstraint("status IN ('enabled', 'disabled')", name="webhook_endpoint_status_known"),
    CheckConstraint(
        "disabled_reason IS NULL OR disabled_reason IN ('gone', 'failing', 'owner')",
        name="webhook_endpoint_disabled_reason_known",
    ),
    CheckConstraint("failed_deliveries >= 0", name="webhook_failed_deliveries_not_negative"),
)
# The consumer looks endpoints up by owner; the API lists an owner's, newest first.
Index("webhooks_endpoints_owner", endpoints.c.owner_id, endpoints.c.created_at)
Index("webhooks_endpoints_created", endpoints.c.created_at, endpoints.c.id)

# `id` is derived from (endpoint, event): it is the `webhook-id` receivers de-duplicate
# on, and a redelivered event inserts the same row, which the primary key keeps single.
# `next_attempt_at` is when a pending delivery is due; a dispatcher that claims one
# pushes it forward (a lease), which also fences the claimer's update of the outcome.
# `round_attempts` counts attempts since the delivery was queued or last replayed (the
# retry schedule's position); `attempts` counts them all.
deliveries = Table(
    "webhooks_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("endpoint_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("round_attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_attempt_at", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(1000), nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint(
        "status IN ('pending', 'delivered', 'failed', 'cancelled')",
        name="webhook_delivery_status_known",
    ),
    CheckConstraint(
        "attempts >= 0 AND round_attempts >= 0 AND round_attempts <= attempts",
        name="webhook_delivery_attempts_bound",
    ),
)
Index("webhooks_deliveries_endpoint_created", deliveries.c.endpoint_id, deliveries.c.created_at)
Index("webhooks_deliveries_endpoint_occurred", deliveries.c.endpoint_id, deliveries.c.occurred_at)
Index("webhooks_deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at)

# Every attempt, successful or not, with a bounded excerpt of what the receiver said.
attempts = Table(
    "webhooks_attempts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("delivery_id", Uuid, nullable=False),
    Column("endpoint_id", Uuid, nullable=False),
    Column("attempted_at", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(1000), nullable=True),
    Column("response_excerpt", String(1000), nullable=True),
    CheckConstraint("duration_ms >= 0", name="webhook_attempt_duration_not_negative"),
)
Index("webhooks_attempts_delivery", attempts.c.delivery_id, attempts.c.attempted_at)
