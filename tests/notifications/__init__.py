"""Helpers for the notifications tests: real events read back from the event feed and
applied by the real consumer, inbox and e-mail rows to compare, and an SMTP server
(aiosmtpd) on a loopback port that keeps what it receives.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import Settings
from payflow.db import read
from payflow.events.consumers import process
from payflow.events.domain import Event, derived_event_id
from payflow.events.feed import START, Position, get_event, read_after
from payflow.ids import parse_public_id
from payflow.notifications import CONSUMER, models

FEED_WAIT_S = 2.0


def event_id(event_type: str, public_id: str) -> uuid.UUID:
    """The id of the `event_type` event caused by the object `public_id` (`txn_…`)."""
    prefix = public_id.split("_", 1)[0]
    return derived_event_id(parse_public_id(prefix, public_id), event_type)


async def feed_events(engine: AsyncEngine, wanted: Collection[uuid.UUID]) -> list[Event]:
    """The events with ids in `wanted`, in feed order, read from the outbox as consumers
    read it. On PostgreSQL the feed shows an event only once every older transaction on
    the server has ended (other test runs' included), so after a short wait the ones
    still hidden are read by id."""
    deadline = time.monotonic() + FEED_WAIT_S
    found: dict[uuid.UUID, tuple[Position, Event]] = {}
    while time.monotonic() < deadline and not set(wanted) <= found.keys():
        position = START
        async with read(engine) as conn:
            while True:
                items, more = await read_after(
                    conn, position, limit=1000, types=CONSUMER.event_types
                )
                found.update((e.id, (p, e)) for p, e in items if e.id in wanted)
                if more is None:
                    break
                position = more
        if not set(wanted) <= found.keys():
            await asyncio.sleep(0.05)
    async with read(engine) as conn:
        for missing in set(wanted) - found.keys():
            item = await get_event(conn, missing)
            assert item is not None, f"no event {missing}"
            found[missing] = item
    return [event for _, event in sorted(found.values(), key=lambda item: item[0])]


async def apply(engine: AsyncEngine, events: list[Event], settings: Settings) -> None:
    """Apply `events` with the notifications consumer; every one must succeed."""
    failures = await process(engine, CONSUMER, events, settings)
    assert failures == {}, failures


async def rows_of(engine: AsyncEngine, user_ids: Collection[uuid.UUID]) -> dict[str, Any]:
    """Everything notifications stores for these users, comparable across calls."""
    async with read(engine) as conn:
        inbox = (
            await conn.execute(
                select(models.inbox)
                .where(models.inbox.c.user_id.in_(list(user_ids)))
                .order_by(models.inbox.c.id)
            )
        ).all()
        emails = (
            await conn.execute(
                select(models.emails)
                .where(models.emails.c.user_id.in_(list(user_ids)))
                .order_by(models.emails.c.id)
            )
        ).all()
    return {
        "inbox": [dict(r._mapping) for r in inbox],
        "emails": [dict(r._mapping) for r in emails],
    }


@dataclass
class Collector:
    """An aiosmtpd handler that keeps each message; it can also be slow or refuse."""

    delay_s: float = 0.0
    refuse_recipients: bool = False
    messages: list[EmailMessage] = field(default_factory=list)
    # Set when a message's data starts arriving (the client is mid-send).
    receiving: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_recipients:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def messages_to(self, addresses: Iterable[str]) -> list[EmailMessage]:
        wanted = set(addresses)
        with self.lock:
            return [m for m in self.messages if m["X-Envelope-To"] in wanted]

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(m["Message-ID"]) for m in self.messages]


@contextmanager
def smtp_server(collector: Collector, port: int) -> Iterator[str]:
    """An SMTP server on 127.0.0.1:`port` for the block; yields its `smtp://` URL."""
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()
