"""Recording what an attempt at a delivery came to, and what follows for its endpoint:
delivered, retried later, given up, or the endpoint disabled.

Sustained failure, defined: an endpoint is disabled when every attempt since its first
failure after its last success has failed for `webhook_disable_after_s`, or when
`webhook_disable_after_failed_deliveries` deliveries in a row were given up on. A 410
Gone disables it at once (the receiver says the endpoint is no more).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.config import Settings
from payflow.ids import uuid7
from payflow.webhooks import models
from payflow.webhooks.domain import (
    DELIVERED,
    ERROR_LENGTH_MAX,
    EXCERPT_LENGTH_MAX,
    FAILED,
    FAILING,
    GONE,
    NS_PER_S,
    PENDING,
    Endpoint,
    clip,
    retry_wait_s,
)
from payflow.webhooks.service import disable, get_endpoint

HTTP_GONE = 410


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a dispatcher holds, leased until `lease_until` (which fences its
    update: a later claim or a replay writes another value)."""

    id: uuid.UUID
    endpoint: Endpoint
    payload: str
    attempts: int
    round_attempts: int
    lease_until: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: the HTTP status, or the error that kept it from one."""

    at: int
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def record(
    conn: AsyncConnection, claimed: Claimed, outcome: Outcome, settings: Settings
) -> None:
    """Log the attempt and apply its consequences (in the caller's transaction)."""
    await conn.execute(
        models.attempts.insert().values(
            id=uuid7(),
            delivery_id=claimed.id,
            endpoint_id=claimed.endpoint.id,
            attempted_at=outcome.at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            error=clip(outcome.error, ERROR_LENGTH_MAX) if outcome.error else None,
            response_excerpt=(
                clip(outcome.response_excerpt, EXCERPT_LENGTH_MAX)
                if outcome.response_excerpt
                else None
            ),
        )
    )
    if outcome.delivered:
        await _delivered(conn, claimed, outcome)
        return
    gone = outcome.status_code == HTTP_GONE
    round_attempts = claimed.round_attempts + 1
    given_up = gone or round_attempts >= settings.webhook_attempts_max
    values: dict[str, Any] = {"status": FAILED} if given_up else {}
    if not given_up:
        wait_s = retry_wait_s(round_attempts, settings.webhook_retry_schedule_s)
        values["next_attempt_at"] = outcome.at + int(wait_s * NS_PER_S)
    fenced = await _update_delivery(conn, claimed, outcome, **values)
    endpoint = await _count_failure(conn, claimed.endpoint.id, outcome.at, given_up and fenced)
    if endpoint is None:
        return
    if gone:
        await disable(conn, endpoint, reason=GONE, at=outcome.at)
    elif sustained_failure(endpoint, outcome.at, settings):
        await disable(conn, endpoint, reason=FAILING, at=outcome.at)


async def _update_delivery(
    conn: AsyncConnection, claimed: Claimed, outcome: Outcome, **values: Any
) -> bool:
    """Update the delivery if this dispatcher still holds it; True if it did."""
    table = models.deliveries
    result = await conn.execute(
        update(table)
        .where(
            table.c.id == claimed.id,
            table.c.status == PENDING,
            table.c.next_attempt_at == claimed.lease_until,
        )
        .values(
            attempts=claimed.attempts + 1,
            round_attempts=claimed.round_attempts + 1,
            last_attempt_at=outcome.at,
            last_status_code=outcome.status_code,
            last_error=clip(outcome.error, ERROR_LENGTH_MAX) if outcome.error else None,
            updated_at=outcome.at,
            **values,
        )
    )
    return bool(result.rowcount)


async def _delivered(conn: AsyncConnection, claimed: Claimed, outcome: Outcome) -> None:
    # Delivered even if the lease was lost meanwhile: the receiver has the message.
    table = models.deliveries
    await conn.execute(
        update(table)
        .where(table.c.id == claimed.id, table.c.status == PENDING)
        .values(
            status=DELIVERED,
            delivered_at=outcome.at,
            attempts=claimed.attempts + 1,
            round_attempts=claimed.round_attempts + 1,
            last_attempt_at=outcome.at,
            last_status_code=outcome.status_code,
            last_error=None,
            updated_at=outcome.at,
        )
    )
    endpoints = models.endpoints
    # A success ends a run of failures (written only when there was one).
    await conn.execute(
        update(endpoints)
        .where(
            endpoints.c.id == claimed.endpoint.id,
            or_(endpoints.c.failing_since.is_not(None), endpoints.c.failed_deliveries > 0),
        )
        .values(failing_since=None, failed_deliveries=0)
    )


async def _count_failure(
    conn: AsyncConnection, endpoint_id: uuid.UUID, at: int, given_up: bool
) -> Endpoint | None:
    """Note a failed attempt (and a given-up delivery) on the endpoint; the endpoint
    after it, or None if it is gone."""
    table = models.endpoints
    values: dict[str, Any] = {"failing_since": func.coalesce(table.c.failing_since, at)}
    if given_up:
        values["failed_deliveries"] = table.c.failed_deliveries + 1
    await conn.execute(update(table).where(table.c.id == endpoint_id).values(**values))
    return await get_endpoint(conn, endpoint_id, owner_id=None)


def sustained_failure(endpoint: Endpoint, at: int, settings: Settings) -> bool:
    """True when `endpoint` has failed long enough at `at` to be disabled: every attempt
    failing for `webhook_disable_after_s`, or that many deliveries given up in a row."""
    failing_for_ns = at - endpoint.failing_since if endpoint.failing_since is not None else 0
    return (
        failing_for_ns >= settings.webhook_disable_after_s * NS_PER_S
        or endpoint.failed_deliveries >= settings.webhook_disable_after_failed_deliveries
    )
