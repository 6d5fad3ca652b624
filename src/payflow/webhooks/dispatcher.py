"""The dispatcher: sends queued deliveries over HTTP, never inside a transaction.

A round claims a bounded batch of due deliveries in one short transaction that pushes
each one's `next_attempt_at` forward by a lease, so other dispatchers pass them by (on
PostgreSQL `FOR UPDATE SKIP LOCKED` also keeps two claims from waiting on each other).
It then sends them at once, each bounded by `webhook_timeout_s`, and records each
attempt in a short transaction of its own. A dispatcher that dies mid-round leaves its
deliveries to be claimed again when the lease runs out: delivery is at least once, and
the `webhook-id` (the same on every attempt) lets receivers drop the repeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow import __version__
from payflow.config import Settings
from payflow.db import is_postgresql, run_in_transaction
from payflow.errors import PayFlowError
from payflow.events.consumers import sleep_or_stop
from payflow.timestamps import now_ns
from payflow.webhooks import models
from payflow.webhooks.domain import (
    ENABLED,
    EXCERPT_LENGTH_MAX,
    NS_PER_S,
    PENDING,
    public_message_id,
    signature_header,
)
from payflow.webhooks.network import Allowed, Target, parse_allowed, resolve
from payflow.webhooks.outcomes import Claimed, Outcome, record
from payflow.webhooks.service import endpoint_from

log = logging.getLogger(__name__)

# Time past the attempt's timeout for resolving the host and recording the outcome: the
# lease must outlast all of it, or another dispatcher could send the same delivery.
LEASE_MARGIN_S = 30.0
ROUND_BACKOFF_S_MAX = 30.0
USER_AGENT = f"PayFlow-Webhooks/{__version__}"


async def claim_due(
    conn: AsyncConnection, *, now: int, lease_until: int, limit: int
) -> list[Claimed]:
    """Up to `limit` pending deliveries due at `now` to enabled endpoints, oldest due
    first, leased until `lease_until`."""
    deliveries, endpoints = models.deliveries, models.endpoints
    query = (
        select(
            deliveries.c.id.label("delivery_id"),
            deliveries.c.payload.label("delivery_payload"),
            deliveries.c.attempts.label("delivery_attempts"),
            deliveries.c.round_attempts.label("delivery_round_attempts"),
            *endpoints.c,
        )
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(
            deliveries.c.status == PENDING,
            deliveries.c.next_attempt_at <= now,
            endpoints.c.status == ENABLED,
            endpoints.c.deleted_at.is_(None),
        )
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    if is_postgresql(conn):
        query = query.with_for_update(skip_locked=True, of=deliveries)
    rows = (await conn.execute(query)).all()
    if rows:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_([row.delivery_id for row in rows]))
            .values(next_attempt_at=lease_until)
        )
    return [
        Claimed(
            id=row.delivery_id,
            endpoint=endpoint_from(row._mapping),
            payload=row.delivery_payload,
            attempts=row.delivery_attempts,
            round_attempts=row.delivery_round_attempts,
            lease_until=lease_until,
        )
        for row in rows
    ]


def request_for(target: Target, claimed: Claimed, *, now: int) -> httpx.Request:
    """The signed POST, addressed to the checked IP address with the URL's own host in
    `Host` (and in TLS's SNI and certificate check)."""
    msg_id = public_message_id(claimed.id)
    timestamp_s = now // NS_PER_S
    body = claimed.payload.encode()
    headers = {
        "Host": _authority(target),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature_header(
            msg_id, timestamp_s, body, claimed.endpoint.signing_secrets(now)
        ),
    }
    url = httpx.URL(target.url).copy_with(host=str(target.address))
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return httpx.Request("POST", url, headers=headers, content=body, extensions=extensions)


def _authority(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


async def attempt(
    client: httpx.AsyncClient, claimed: Claimed, allowed: Allowed, timeout_s: float
) -> Outcome:
    """One attempt: check the URL's addresses again, POST, read a bounded excerpt."""
    at = now_ns()
    started = time.perf_counter()
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            target = await resolve(claimed.endpoint.url, allowed)
            response = await client.send(request_for(target, claimed, now=at), stream=True)
            try:
                status_code = response.status_code
                excerpt = await _excerpt(response)
            finally:
                await response.aclose()
    except PayFlowError as refused:
        error = f"{refused.code}: {refused.message}"
    except TimeoutError:
        error = f"timed out after {timeout_s} s"
    except httpx.HTTPError as failed:
        error = f"{type(failed).__name__}: {failed}" if str(failed) else type(failed).__name__
    duration_ms = round((time.perf_counter() - started) * 1000)
    return Outcome(at, duration_ms, status_code, error, excerpt)


async def _excerpt(response: httpx.Response) -> str | None:
    """The start of the answer's body: enough to debug with, bounded whatever was sent."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= EXCERPT_LENGTH_MAX * 4:
            break
    text = b"".join(chunks)[: EXCERPT_LENGTH_MAX * 4].decode("utf-8", errors="replace")
    return text[:EXCERPT_LENGTH_MAX] or None


def new_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client: no redirects (a 3xx is a failed attempt, not a detour past the
    address check), no proxies from the environment, no reused connections (each attempt
    connects to the address it checked)."""
    return httpx.AsyncClient(
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def dispatch_due(
    engine: AsyncEngine, settings: Settings, client: httpx.AsyncClient, *, now: int | None = None
) -> int:
    """One round: claim the deliveries due at `now` (default: the clock), send them,
    record every attempt. Returns how many were claimed."""
    now = now_ns() if now is None else now
    lease_ns = int((settings.webhook_timeout_s + LEASE_MARGIN_S) * NS_PER_S)
    # A few random nanoseconds make each claim's lease value its own, so that it fences
    # the claimer's updates even if two claims happen in the same nanosecond.
    lease_until = now + lease_ns + random.randrange(1_000_000)
    claimed = await run_in_transaction(
        engine,
        lambda conn: claim_due(
            conn, now=now, lease_until=lease_until, limit=settings.webhook_batch_size_max
        ),
    )
    allowed = parse_allowed(settings.webhook_allowed_private)

    async def send(one: Claimed) -> None:
        outcome = await attempt(client, one, allowed, settings.webhook_timeout_s)
        if not outcome.delivered:
            log.info("webhook %s not delivered: %s", one.id, outcome.error or outcome.status_code)
        await run_in_transaction(engine, lambda conn: record(conn, one, outcome, settings))

    results = await asyncio.gather(*(send(one) for one in claimed), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return len(claimed)


async def run_dispatcher(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Send due deliveries until `stop` is set (a round under way finishes first). A
    database outage is waited out with back-off."""
    failures = 0
    async with new_client(settings) as client:
        while not stop.is_set():
            try:
                claimed = await dispatch_due(engine, settings, client)
                failures = 0
            except Exception:
                failures += 1
                delay_s = min(
                    ROUND_BACKOFF_S_MAX, settings.webhook_poll_interval_s * 2 ** min(failures, 10)
                )
                log.exception("webhook dispatch round failed; retrying in %.1f s", delay_s)
                await sleep_or_stop(stop, delay_s)
                continue
            if claimed < settings.webhook_batch_size_max:
                await sleep_or_stop(stop, settings.webhook_poll_interval_s)
