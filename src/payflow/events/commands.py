"""CLI entrypoints of the event backbone: dead letters and the backlog."""

from __future__ import annotations

import uuid

from rich.console import Console
from rich.table import Table

from payflow.config import get_settings
from payflow.db import create_engine, read
from payflow.errors import PayFlowError
from payflow.events import dead_letters
from payflow.events.brokers import broker_kind
from payflow.events.cleanup import backlog
from payflow.ids import format_public_id, parse_public_id
from payflow.timestamps import to_rfc3339


async def run_list_dead_letters(
    console: Console, *, consumer: str | None, status: str | None, limit: int
) -> None:
    engine = create_engine(get_settings().database_url)
    try:
        async with read(engine) as conn:
            letters, _ = await dead_letters.list_dead_letters(
                conn, consumer=consumer, status=status, after=None, limit=limit
            )
    finally:
        await engine.dispose()
    table = Table("id", "consumer", "event", "status", "attempts", "parked", "error")
    for letter in letters:
        table.add_row(
            format_public_id("dlq", letter.id),
            letter.consumer,
            letter.event_type,
            letter.status,
            str(letter.attempts),
            to_rfc3339(letter.parked_at),
            letter.error[:80],
        )
    console.print(table)


async def run_replay(console: Console, *, letter_id: str | None, consumer: str | None) -> bool:
    """Mark one letter (or all parked ones) for replay; workers apply them shortly."""
    engine = create_engine(get_settings().database_url)
    try:
        async with engine.begin() as conn:
            if letter_id is None:
                count = await dead_letters.request_replay_all(conn, consumer=consumer)
                console.print(f"{count} dead letter(s) will be replayed")
                return True
            parsed: uuid.UUID = parse_public_id("dlq", letter_id)
            letter = await dead_letters.request_replay(conn, parsed)
            console.print(f"{format_public_id('dlq', letter.id)} will be replayed")
            return True
    except PayFlowError as error:
        console.print(f"[red]{error.code}[/red]: {error.message}")
        return False
    finally:
        await engine.dispose()


async def run_backlog(console: Console) -> None:
    settings = get_settings()
    if broker_kind(settings.broker_url) == "local":
        console.print("in-process delivery (no PAYFLOW_BROKER_URL): nothing is published")
        return
    engine = create_engine(settings.database_url)
    try:
        async with read(engine) as conn:
            found = await backlog(conn)
    finally:
        await engine.dispose()
    console.print(
        f"unpublished events: {found['unpublished']}"
        f" (oldest {found['oldest_unpublished_age_ms']} ms)"
    )
