"""The feed reads the outbox in commit order and never skips an event that commits late."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.errors import PayFlowError
from payflow.events.feed import START, Position, read_after
from payflow.events.outbox import emit
from tests.events.support import make_events, unique_type, write


async def _all_after(
    engine: AsyncEngine, after: Position, event_type: str, *, expected: int = 0
) -> list[str]:
    """The feed's events of `event_type` after `after`, waiting (bounded) for `expected`
    of them: on PostgreSQL any older transaction on the server, even another test run's,
    holds the feed back until it ends."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        async with engine.connect() as conn:
            items, _ = await read_after(conn, after, limit=1000, types=[event_type])
        if len(items) >= expected or asyncio.get_running_loop().time() > deadline:
            return [str(event.data["n"]) for _, event in items]
        await asyncio.sleep(0.05)


async def test_events_come_back_in_write_order_with_their_envelope(db: AsyncEngine) -> None:
    event_type = unique_type()
    events = make_events(event_type, 5)
    await write(db, events[:2])
    await write(db, events[2:])
    await _all_after(db, START, event_type, expected=5)
    async with db.connect() as conn:
        items, more = await read_after(conn, START, limit=1000, types=[event_type])
    assert [e.id for _, e in items] == [e.id for e in events]
    assert more is None
    first = items[0][1]
    assert first.envelope()["id"] == f"evt_{events[0].id.hex}"
    assert first.data == {"n": 0}
    assert first.occurred_at == events[0].occurred_at


async def test_paging_by_position_visits_every_event_once(db: AsyncEngine) -> None:
    event_type = unique_type()
    events = make_events(event_type, 23)
    for i in range(0, 23, 4):
        await write(db, events[i : i + 4])
    await _all_after(db, START, event_type, expected=23)
    seen = []
    after = START
    async with db.connect() as conn:
        while True:
            items, more = await read_after(conn, after, limit=5, types=[event_type])
            seen += [e.id for _, e in items]
            if more is None:
                break
            after = more
    assert seen == [e.id for e in events]


async def test_an_event_is_written_once_even_if_the_writer_retries(db: AsyncEngine) -> None:
    [event] = make_events(unique_type(), 1)
    await write(db, [event])
    with pytest.raises(Exception, match=r"(?i)unique"):
        await write(db, [event])
    assert await _all_after(db, START, event.type, expected=1) == ["0"]


@pytest.mark.postgresql_only
async def test_a_late_commit_with_a_lower_sequence_is_not_skipped(pg_db: AsyncEngine) -> None:
    """Transaction A writes first (lower sequence) but commits after B: a reader that
    paged past B must still get A."""
    event_type = unique_type()
    a, b = make_events(event_type, 2)
    async with pg_db.connect() as slow:
        transaction = await slow.begin()
        await emit(slow, [a])
        await write(pg_db, [b])
        # A is still running: the reader sees neither A nor B, so it cannot page past A.
        assert await _all_after(pg_db, START, event_type) == []
        await transaction.commit()
    assert await _all_after(pg_db, START, event_type, expected=2) == ["0", "1"]


@pytest.mark.postgresql_only
async def test_an_older_transaction_committing_last_comes_first(pg_db: AsyncEngine) -> None:
    """A takes its transaction id first, B writes and commits, then A writes (a higher
    sequence) and commits: the feed orders by transaction, and a reader who read while A
    was open and kept its cursor still gets both, each once."""
    event_type = unique_type()
    a, b = make_events(event_type, 2)
    async with pg_db.connect() as slow:
        transaction = await slow.begin()
        await slow.execute(text("SELECT pg_current_xact_id()"))
        await write(pg_db, [b])
        async with pg_db.connect() as conn:
            early, _ = await read_after(conn, START, limit=1000, types=[event_type])
        assert early == []
        await emit(slow, [a])
        await transaction.commit()
    assert await _all_after(pg_db, START, event_type, expected=2) == ["0", "1"]


@pytest.mark.postgresql_only
async def test_a_cursor_taken_while_a_transaction_runs_still_sees_it(pg_db: AsyncEngine) -> None:
    event_type = unique_type()
    first, late, after_late = make_events(event_type, 3)
    await write(pg_db, [first])
    await _all_after(pg_db, START, event_type, expected=1)
    async with pg_db.connect() as slow:
        transaction = await slow.begin()
        await emit(slow, [late])
        await write(pg_db, [after_late])
        async with pg_db.connect() as conn:
            items, _ = await read_after(conn, START, limit=1000, types=[event_type])
        assert [e.id for _, e in items] == [first.id]
        cursor = items[-1][0]
        await transaction.commit()
    assert await _all_after(pg_db, cursor, event_type, expected=2) == ["1", "2"]


# "", junk, a string, three numbers, a negative, beyond BIGINT, null.
MALFORMED = ["", "x", "!!!!", "WyJhIiwxXQ", "WzEsMiwzXQ", "Wy0xLDFd", "bnVsbA"]
MALFORMED.append("WzEsMTAwMDAwMDAwMDAwMDAwMDAwMDAwXQ")


@pytest.mark.parametrize("text_", MALFORMED)
def test_malformed_cursors_are_refused(text_: str) -> None:
    with pytest.raises(PayFlowError) as caught:
        Position.decode(text_)
    assert caught.value.code == "cursor_invalid"


def test_a_cursor_round_trips() -> None:
    position = Position(2**40, 17)
    assert Position.decode(position.encode()) == position
    assert Position.decode("WzEsMl0") == Position(1, 2)
