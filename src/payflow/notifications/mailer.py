"""The mailer: sends queued e-mails over SMTP, never inside a database transaction.

A round claims a bounded batch of due e-mails in one short transaction that pushes each
one's `next_attempt_at` forward by a lease, so other mailers pass them by (on PostgreSQL
`FOR UPDATE SKIP LOCKED` also keeps two claims from waiting on each other). It then
sends them at once, each bounded by `smtp_timeout_s`, and records each outcome in a
short transaction of its own. A mailer that dies mid-round leaves its e-mails to be
claimed again when the lease runs out: delivery is at least once, and the Message-ID,
derived from the e-mail's id, lets mail software recognise the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.config import Settings
from payflow.db import is_postgresql, run_in_transaction
from payflow.notifications import models
from payflow.notifications.domain import (
    ERROR_LENGTH_MAX,
    FAILED,
    QUEUED,
    SENT,
    QueuedEmail,
    SmtpServer,
    clip,
    gives_up,
    message_id,
    parse_smtp_url,
    retry_delay_s,
)
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)

# Time past the send timeout for recording the outcome: the lease must outlast both, or
# another mailer could send the same e-mail while this one is still at it.
LEASE_MARGIN_S = 30.0
# Failed rounds (the database is down) back off from the poll interval up to 2^6 times it.
ROUND_BACKOFF_STEPS_MAX = 7
NS_PER_S = 1_000_000_000


async def claim_due(
    conn: AsyncConnection, *, now: int, lease_until: int, limit: int
) -> list[QueuedEmail]:
    """Up to `limit` queued e-mails due at `now`, oldest due first, leased until
    `lease_until`."""
    table = models.emails
    query = (
        select(
            table.c.id,
            table.c.to_address,
            table.c.subject,
            table.c.body,
            table.c.attempts,
            table.c.created_at,
        )
        .where(table.c.status == QUEUED, table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at)
        .limit(limit)
    )
    if is_postgresql(conn):
        query = query.with_for_update(skip_locked=True)
    rows = (await conn.execute(query)).all()
    if rows:
        await conn.execute(
            update(table)
            .where(table.c.id.in_([row.id for row in rows]))
            .values(next_attempt_at=lease_until)
        )
    return [QueuedEmail(**row._mapping, lease_until=lease_until) for row in rows]


async def record_sent(conn: AsyncConnection, email: QueuedEmail, *, at: int) -> None:
    # Not fenced by the lease: the e-mail has gone, whoever holds the lease now.
    table = models.emails
    await conn.execute(
        update(table)
        .where(table.c.id == email.id, table.c.status == QUEUED)
        .values(status=SENT, sent_at=at, attempts=email.attempts + 1, last_error=None)
    )


async def record_failure(
    conn: AsyncConnection,
    email: QueuedEmail,
    *,
    error: str,
    permanent: bool,
    at: int,
    settings: Settings,
) -> None:
    """Count the failed attempt; retry later with back-off, or give up. Fenced by the
    lease: a mailer that lost its lease (it stalled) changes nothing."""
    attempts = email.attempts + 1
    table = models.emails
    values: dict[str, object] = {"attempts": attempts, "last_error": clip(error, ERROR_LENGTH_MAX)}
    if gives_up(attempts, settings.mail_attempts_max, permanent=permanent):
        values.update(status=FAILED, next_attempt_at=at)
    else:
        delay_ns = int(retry_delay_s(attempts, settings.mail_backoff_s) * NS_PER_S)
        values.update(next_attempt_at=at + delay_ns)
    await conn.execute(
        update(table)
        .where(
            table.c.id == email.id,
            table.c.status == QUEUED,
            table.c.next_attempt_at == email.lease_until,
        )
        .values(**values)
    )


def build_message(email: QueuedEmail, *, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to_address
    message["Subject"] = email.subject
    message["Message-ID"] = message_id(email.id, sender)
    # When PayFlow wrote it, the same on every attempt, as the Message-ID is.
    message["Date"] = formatdate(email.created_at // NS_PER_S, usegmt=True)
    # RFC 3834: out-of-office and other robots must not answer.
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the body 7-bit: any server relays it, 8BITMIME or not.
    message.set_content(email.body, cte="quoted-printable")
    return message


async def send_message(server: SmtpServer, message: EmailMessage, *, timeout_s: float) -> None:
    """Send over one connection; the whole exchange is bounded by `timeout_s` (aiosmtplib's
    own timeout applies per step, so a server answering slowly at every step would
    otherwise take several times as long)."""
    async with asyncio.timeout(timeout_s):
        await aiosmtplib.send(
            message,
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.use_tls,
            timeout=timeout_s,
        )


def is_permanent(error: Exception) -> bool:
    """True when trying again cannot help: the server refused the recipient or the
    content for good (5xx), or the message cannot be built."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refusal.code >= 500 for refusal in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code >= 500
    return isinstance(error, ValueError)


def describe(error: Exception, *, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_s} s"
    return f"{type(error).__name__}: {error}"


async def deliver(
    engine: AsyncEngine, server: SmtpServer, settings: Settings, email: QueuedEmail
) -> bool:
    """Send one claimed e-mail and record the outcome; True if it was sent."""
    try:
        message = build_message(email, sender=settings.smtp_from)
        await send_message(server, message, timeout_s=settings.smtp_timeout_s)
    except Exception as error:
        text = describe(error, timeout_s=settings.smtp_timeout_s)
        permanent = is_permanent(error)
        log.warning("e-mail %s not sent (attempt %d): %s", email.id, email.attempts + 1, text)
    else:
        await run_in_transaction(engine, lambda conn: record_sent(conn, email, at=now_ns()))
        return True

    async def failed(conn: AsyncConnection) -> None:
        await record_failure(
            conn, email, error=text, permanent=permanent, at=now_ns(), settings=settings
        )

    await run_in_transaction(engine, failed)
    return False


async def send_due(engine: AsyncEngine, settings: Settings, *, now: int | None = None) -> int:
    """One round: claim the e-mails due at `now` (default: the clock), send them, record
    the outcomes. Returns how many were claimed."""
    assert settings.smtp_url is not None, "the mailer needs smtp_url"
    server = parse_smtp_url(settings.smtp_url)
    now = now_ns() if now is None else now
    lease_ns = int((settings.smtp_timeout_s + LEASE_MARGIN_S) * NS_PER_S)
    # A few random nanoseconds make each claim's lease value its own, so that it can
    # fence the claimer's updates even if two claims happen in the same nanosecond.
    lease_until = now + lease_ns + random.randrange(1_000_000)
    claimed = await run_in_transaction(
        engine,
        lambda conn: claim_due(
            conn, now=now, lease_until=lease_until, limit=settings.mail_batch_size_max
        ),
    )
    results = await asyncio.gather(
        *(deliver(engine, server, settings, email) for email in claimed), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return len(claimed)


async def run_mailer(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Send due e-mails until `stop` is set (a round under way finishes first).

    Without `smtp_url` there is nowhere to send to: it returns at once, and e-mails stay
    queued until a mailer with a server runs. A database outage is waited out.
    """
    if settings.smtp_url is None:
        log.info("no PAYFLOW_SMTP_URL: e-mails stay queued")
        return
    failures = 0
    while not stop.is_set():
        try:
            claimed = await send_due(engine, settings)
            failures = 0
        except Exception:
            failures += 1
            steps = min(failures, ROUND_BACKOFF_STEPS_MAX)
            delay_s = retry_delay_s(steps, settings.mail_poll_interval_s)
            log.exception("mailer round failed; retrying in %.1f s", delay_s)
            await _sleep_or_stop(stop, delay_s)
            continue
        if claimed < settings.mail_batch_size_max:
            await _sleep_or_stop(stop, settings.mail_poll_interval_s)


async def _sleep_or_stop(stop: asyncio.Event, delay_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay_s)
