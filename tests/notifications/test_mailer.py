"""The mailer against a real SMTP server (aiosmtpd) on both backends: delivery with the
right headers, a server that is down or slow costs attempts (with back-off, then
failure) but never hangs the mailer or delays a payment, a refused recipient fails at
once, and two mailers running together send each e-mail once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import Settings
from payflow.db import create_engine, read
from payflow.identity import service as identity
from payflow.identity.domain import Role, User
from payflow.identity.events import user_registered
from payflow.ids import parse_public_id
from payflow.notifications import models, run_mailer, send_due
from payflow.notifications.domain import email_id, message_id
from payflow.notifications.mailer import claim_due
from tests.api import conftest as api_fixtures
from tests.api.conftest import Server, free_port, key, register, topup
from tests.notifications import Collector, apply, event_id, feed_events, smtp_server

server = api_fixtures.server
api = api_fixtures.api

SECOND_NS = 1_000_000_000


def mail_settings(engine: AsyncEngine, smtp_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "smtp_url": smtp_url,
        "smtp_timeout_s": 2.0,
        "mail_backoff_s": 10.0,
        "mail_attempts_max": 3,
        "mail_poll_interval_s": 0.02,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def mail_db(db: AsyncEngine) -> AsyncEngine:
    """The database with no e-mails queued by earlier tests (the mailer sends whatever is
    due, and each test counts what it sends)."""
    async with db.begin() as conn:
        await conn.execute(delete(models.emails))
    return db


async def queue_welcomes(engine: AsyncEngine, count: int) -> list[User]:
    """`count` new users, each with a welcome e-mail queued by the real consumer."""
    async with engine.begin() as conn:
        users = [
            await identity.create_user(
                conn,
                email=f"{handle}@example.com",
                password_hash="unused",
                name=f"User {handle}",
                handle=handle,
                role=Role.CUSTOMER,
            )
            for handle in (f"m_{uuid.uuid4().hex[:12]}" for _ in range(count))
        ]
    await apply(engine, [user_registered(u) for u in users], Settings())
    return users


async def email_rows(engine: AsyncEngine, user_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    table = models.emails
    async with read(engine) as conn:
        rows = await conn.execute(
            select(table).where(table.c.user_id.in_(user_ids)).order_by(table.c.id)
        )
    return [dict(r._mapping) for r in rows]


async def test_queued_emails_are_delivered_once_with_their_headers(mail_db: AsyncEngine) -> None:
    users = await queue_welcomes(mail_db, 3)
    collector = Collector()
    with smtp_server(collector, free_port()) as url:
        settings = mail_settings(mail_db, url)
        assert await send_due(mail_db, settings) == 3
        assert await send_due(mail_db, settings) == 0
    delivered = collector.messages_to(u.email for u in users)
    assert len(delivered) == len(collector.messages) == 3
    by_to = {str(m["To"]): m for m in delivered}
    for user in users:
        message = by_to[user.email]
        welcome = user_registered(user)
        assert message["X-Envelope-To"] == user.email
        assert message["From"] == "PayFlow <no-reply@payflow.local>"
        assert message["Subject"] == f"Welcome to PayFlow, {user.name}"
        assert message["Message-ID"] == message_id(
            email_id(welcome.id, user.id), settings.smtp_from
        )
        assert message["Auto-Submitted"] == "auto-generated"
        text = message.get_body().get_content()  # type: ignore[union-attr]
        assert f"Your PayFlow address is {user.handle}@payflow." in text
    for row in await email_rows(mail_db, [u.id for u in users]):
        assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
        assert row["sent_at"] is not None


async def test_a_server_that_is_down_costs_attempts_then_fails(mail_db: AsyncEngine) -> None:
    [user] = await queue_welcomes(mail_db, 1)
    settings = mail_settings(mail_db, f"smtp://127.0.0.1:{free_port()}")
    later = time.time_ns()
    for attempt, ceiling_s in [(1, 10), (2, 20)]:
        before = time.time_ns()
        assert await send_due(mail_db, settings, now=later) == 1
        [row] = await email_rows(mail_db, [user.id])
        assert (row["status"], row["attempts"]) == ("queued", attempt)
        assert row["last_error"]
        # Exponential back-off with jitter: half to all of 10 s, then of 20 s.
        waited_s = (row["next_attempt_at"] - before) / SECOND_NS
        assert ceiling_s / 2 - 0.1 <= waited_s <= ceiling_s + 1, waited_s
        # Not due again before then.
        assert await send_due(mail_db, settings) == 0
        later = row["next_attempt_at"]
    assert await send_due(mail_db, settings, now=later) == 1
    [row] = await email_rows(mail_db, [user.id])
    assert (row["status"], row["attempts"], row["sent_at"]) == ("failed", 3, None)
    assert await send_due(mail_db, settings, now=later + 3600 * SECOND_NS) == 0


async def test_a_slow_server_times_out_as_a_failed_attempt(mail_db: AsyncEngine) -> None:
    [user] = await queue_welcomes(mail_db, 1)
    collector = Collector(delay_s=1.5)
    with smtp_server(collector, free_port()) as url:
        settings = mail_settings(mail_db, url, smtp_timeout_s=0.3)
        started = time.monotonic()
        assert await send_due(mail_db, settings) == 1
        elapsed_s = time.monotonic() - started
    assert elapsed_s < 1.2, elapsed_s
    [row] = await email_rows(mail_db, [user.id])
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["last_error"] == "timed out after 0.3 s"


async def test_a_refused_recipient_fails_at_once(mail_db: AsyncEngine) -> None:
    [user] = await queue_welcomes(mail_db, 1)
    with smtp_server(Collector(refuse_recipients=True), free_port()) as url:
        assert await send_due(mail_db, mail_settings(mail_db, url)) == 1
    [row] = await email_rows(mail_db, [user.id])
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "550" in row["last_error"]


async def test_two_mailers_send_each_email_once(mail_db: AsyncEngine) -> None:
    users = await queue_welcomes(mail_db, 40)
    collector = Collector(delay_s=0.01)
    with smtp_server(collector, free_port()) as url:
        settings = mail_settings(mail_db, url, mail_batch_size_max=4)
        other = create_engine(settings.database_url)
        stop = asyncio.Event()
        mailers = [
            asyncio.create_task(run_mailer(engine, settings, stop)) for engine in (mail_db, other)
        ]
        try:
            for _ in range(400):
                if len(collector.messages_to(u.email for u in users)) >= len(users):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # a duplicate, if any, would arrive now
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*mailers), timeout=10)
            await other.dispose()
    sent = collector.message_ids()
    assert len(sent) == len(set(sent))
    assert len(collector.messages_to(u.email for u in users)) == len(users)
    assert {r["status"] for r in await email_rows(mail_db, [u.id for u in users])} == {"sent"}


async def test_concurrent_claims_skip_each_others_emails(pg_db: AsyncEngine) -> None:
    """PostgreSQL: a claim passes over e-mails another uncommitted claim holds, without
    waiting for it, and never takes them too."""
    async with pg_db.begin() as conn:
        await conn.execute(delete(models.emails))
    await queue_welcomes(pg_db, 6)
    now = time.time_ns()
    async with pg_db.begin() as first_conn:
        first = await claim_due(first_conn, now=now, lease_until=now + 1, limit=4)
        async with pg_db.begin() as second_conn:
            second = await asyncio.wait_for(
                claim_due(second_conn, now=now, lease_until=now + 2, limit=4), timeout=5
            )
    assert (len(first), len(second)) == (4, 2)
    assert not {e.id for e in first} & {e.id for e in second}


@contextlib.asynccontextmanager
async def mailer_at_work(api: Server, user_ids: list[uuid.UUID], kind: str) -> AsyncIterator[None]:
    """A mailer running against a mail server that is down or does not answer in time,
    entered once it is at work on the queued e-mails; stopped on exit."""
    collector = Collector(delay_s=5)
    port = free_port()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(smtp_server(collector, port)) if kind == "slow" else None
        settings = mail_settings(api.engine, url or f"smtp://127.0.0.1:{port}", smtp_timeout_s=1)
        stop = asyncio.Event()
        mailer = asyncio.create_task(run_mailer(api.engine, settings, stop))
        try:
            if kind == "slow":
                # Mid-send, holding connections to a server that does not answer.
                assert await asyncio.to_thread(collector.receiving.wait, 5)
            else:
                for _ in range(100):
                    if all(r["attempts"] for r in await email_rows(api.engine, user_ids)):
                        break
                    await asyncio.sleep(0.05)
            yield
        finally:
            stop.set()
            await asyncio.wait_for(mailer, timeout=5)


@pytest.mark.parametrize("kind", ["down", "slow"])
async def test_a_failing_mail_server_never_delays_a_payment(api: Server, kind: str) -> None:
    async with api.engine.begin() as conn:
        await conn.execute(delete(models.emails))
    asha, ravi = await register(api.client), await register(api.client)
    user_ids = [parse_public_id("usr", u.id) for u in (asha, ravi)]
    await topup(api.client, asha, 10_000)
    welcomes = [event_id("user.registered", u.id) for u in (asha, ravi)]
    await apply(api.engine, await feed_events(api.engine, welcomes), api.settings)
    async with mailer_at_work(api, user_ids, kind):
        started = time.monotonic()
        sent = await api.client.post(
            "/v1/transfers",
            json={"to": ravi.handle, "amount": 100, "currency": "INR"},
            headers={**asha.auth, **key()},
        )
        elapsed_s = time.monotonic() - started
    assert sent.status_code == 201, sent.text
    assert elapsed_s < 0.5, elapsed_s
    rows = await email_rows(api.engine, user_ids)
    assert [(r["status"], r["attempts"]) for r in rows] == [("queued", 1), ("queued", 1)]
    assert all(r["last_error"] for r in rows)
