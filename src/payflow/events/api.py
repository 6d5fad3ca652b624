"""HTTP routes of the event backbone: the event feed and the dead-letter queue."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Conn, Operator, State
from payflow.api.problems import responses
from payflow.api.schemas import Limit, StrictModel, page, parse_cursor, parse_id
from payflow.errors import PayFlowError
from payflow.events import dead_letters, models
from payflow.events.brokers import broker_kind
from payflow.events.cleanup import backlog
from payflow.events.dead_letters import DeadLetter
from payflow.events.domain import TYPE_LENGTH_MAX
from payflow.events.feed import START, Position, oldest_position, read_after
from payflow.ids import format_public_id
from payflow.operators.service import log_action
from payflow.timestamps import to_rfc3339

router = APIRouter(tags=["events"], responses=responses(401, 403, 429))

Cursor = Annotated[str | None, Query(max_length=100)]
EventType = Annotated[str | None, Query(min_length=1, max_length=TYPE_LENGTH_MAX)]
ConsumerName = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


class EventOut(BaseModel):
    id: str
    type: str
    version: int
    occurred_at: str
    aggregate_type: str
    aggregate_id: str
    data: dict[str, Any]


class FeedPage(BaseModel):
    data: list[EventOut]
    # Where to continue: the position after the last event here (or the `after` given,
    # when nothing new is ready). Never null: a feed is polled, not exhausted.
    next_cursor: str
    has_more: bool


async def _check_not_expired(conn: AsyncConnection, after: Position) -> None:
    """410 if events after `after` may have been cleaned up before the caller saw them."""
    if after == START:
        return
    oldest = await oldest_position(conn)
    if oldest is None or oldest <= after:
        return
    table = models.outbox
    still_kept = await conn.scalar(
        select(table.c.sequence).where(table.c.sequence == after.sequence)
    )
    if still_kept is None:
        raise PayFlowError(
            "cursor_expired",
            "events after this cursor were deleted (retention); start again without `after`",
            http_status=410,
        )


@router.get("/v1/events", responses=responses(410, 422))
async def feed(
    principal: Operator,
    conn: Conn,
    after: Cursor = None,
    limit: Annotated[Limit, Query()] = 50,
    type: EventType = None,
) -> FeedPage:
    """Every event in commit order, oldest first. Page with `after=<next_cursor>`; an
    event committed late by a slow transaction is never skipped (docs/events.md)."""
    position = Position.decode(after) if after is not None else START
    await _check_not_expired(conn, position)
    items, more = await read_after(
        conn, position, limit=limit, types=[type] if type is not None else None
    )
    last = items[-1][0] if items else position
    return FeedPage(
        data=[EventOut.model_validate(event.envelope()) for _, event in items],
        next_cursor=last.encode(),
        has_more=more is not None,
    )


class DeadLetterOut(BaseModel):
    id: str
    object: Literal["dead_letter"]
    consumer: str
    event_id: str
    event_type: str
    status: Literal["parked", "replaying", "replayed"]
    attempts: int
    error: str
    body: str
    created_at: str
    parked_at: str
    replay_requested_at: str | None
    resolved_at: str | None


class DeadLetterPage(BaseModel):
    data: list[DeadLetterOut]
    next_cursor: str | None


class ReplayAllBody(StrictModel):
    consumer: Annotated[str | None, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")] = (
        None
    )


class ReplayAllOut(BaseModel):
    requested: int


class BacklogOut(BaseModel):
    delivery: str = Field(description="`local` (the embedded log) or the broker's name")
    # Null in the embedded default: there is no broker to publish to.
    unpublished: int | None
    oldest_unpublished_age_ms: int | None
    dead_letters_parked: int


def _optional_time(value: int | None) -> str | None:
    return to_rfc3339(value) if value is not None else None


def letter_view(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": format_public_id("dlq", letter.id),
        "object": "dead_letter",
        "consumer": letter.consumer,
        "event_id": format_public_id("evt", letter.event_id),
        "event_type": letter.event_type,
        "status": letter.status,
        "attempts": letter.attempts,
        "error": letter.error,
        "body": letter.body,
        "created_at": to_rfc3339(letter.created_at),
        "parked_at": to_rfc3339(letter.parked_at),
        "replay_requested_at": _optional_time(letter.replay_requested_at),
        "resolved_at": _optional_time(letter.resolved_at),
    }


@router.get("/v1/operator/dead-letters", responses=responses(422))
async def list_letters(
    principal: Operator,
    conn: Conn,
    consumer: ConsumerName = None,
    status: Literal["parked", "replaying", "replayed"] | None = None,
    after: Cursor = None,
    limit: Annotated[Limit, Query()] = 50,
) -> DeadLetterPage:
    """Events consumers gave up on, newest first."""
    letters, cursor = await dead_letters.list_dead_letters(
        conn, consumer=consumer, status=status, after=parse_cursor(after), limit=limit
    )
    return DeadLetterPage.model_validate(page([letter_view(x) for x in letters], cursor))


@router.get("/v1/operator/dead-letters/{letter_id}", responses=responses(404))
async def get_letter(letter_id: str, principal: Operator, conn: Conn) -> DeadLetterOut:
    found = await dead_letters.get_dead_letter(
        conn, parse_id("dlq", letter_id, not_found="dead_letter_not_found")
    )
    if found is None:
        raise PayFlowError(
            "dead_letter_not_found", f"no such dead letter {letter_id!r}", http_status=404
        )
    return DeadLetterOut.model_validate(letter_view(found))


@router.post(
    "/v1/operator/dead-letters/{letter_id}/replay", status_code=202, responses=responses(404, 409)
)
async def replay(letter_id: str, principal: Operator, state: State) -> DeadLetterOut:
    """Hand a parked event to its consumer again (a worker applies it shortly)."""
    parsed = parse_id("dlq", letter_id, not_found="dead_letter_not_found")
    async with state.engine.begin() as conn:
        letter = await dead_letters.request_replay(conn, parsed)
        await log_action(
            conn,
            actor_id=principal.user_id,
            action="dead_letter_replay",
            target=format_public_id("dlq", letter.id),
            details={"consumer": letter.consumer, "event_type": letter.event_type},
        )
    return DeadLetterOut.model_validate(letter_view(letter))


@router.post(
    "/v1/operator/dead-letters/replay", status_code=202, responses=responses(400, 413, 422)
)
async def replay_all(body: ReplayAllBody, principal: Operator, state: State) -> ReplayAllOut:
    """Replay every parked event (of one consumer, or of all)."""
    async with state.engine.begin() as conn:
        count = await dead_letters.request_replay_all(conn, consumer=body.consumer)
        await log_action(
            conn,
            actor_id=principal.user_id,
            action="dead_letters_replay_all",
            target=body.consumer,
            details={"requested": count},
        )
    return ReplayAllOut(requested=count)


@router.get("/v1/operator/events/backlog")
async def events_backlog(principal: Operator, conn: Conn, state: State) -> BacklogOut:
    """Events not yet published to the broker, and parked dead letters."""
    delivery = broker_kind(state.settings.broker_url)
    found: dict[str, int | None] = {"unpublished": None, "oldest_unpublished_age_ms": None}
    if delivery != "local":
        found.update(await backlog(conn))
    table = models.dead_letters
    parked = await conn.scalar(
        select(func.count()).select_from(table).where(table.c.status == dead_letters.PARKED)
    )
    return BacklogOut(delivery=delivery, **found, dead_letters_parked=int(parked or 0))
