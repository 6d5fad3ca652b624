"""HTTP routes for the inbox: list, mark one read, mark all read. Each caller (customer,
merchant by API key, operator) sees only their own notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, State
from payflow.api.problems import responses
from payflow.api.schemas import Limit, parse_cursor, parse_id
from payflow.db import run_in_transaction
from payflow.errors import PayFlowError
from payflow.notifications import service
from payflow.notifications.domain import Notification
from payflow.notifications.schemas import NotificationOut, NotificationPage, ReadAllOut

router = APIRouter(prefix="/v1", tags=["notifications"], responses=responses(401, 429))


@router.get("/notifications", responses=responses(422))
async def list_notifications(
    principal: Caller,
    conn: Conn,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
    unread: Annotated[bool, Query(description="Only the unread ones")] = False,
) -> NotificationPage:
    """The caller's notifications, newest first, with how many are unread."""
    found, cursor = await service.list_inbox(
        conn, user_id=principal.user_id, unread_only=unread, limit=limit, after=parse_cursor(after)
    )
    return NotificationPage(
        data=[NotificationOut.of(n) for n in found],
        next_cursor=cursor.encode() if cursor is not None else None,
        unread_count=await service.unread_count(conn, user_id=principal.user_id),
    )


@router.post("/notifications/{notification_id}/read", responses=responses(404))
async def read_notification(
    notification_id: str, principal: Caller, state: State
) -> NotificationOut:
    """Mark one notification read. Again is harmless: it keeps the first `read_at`."""
    parsed = parse_id("ntf", notification_id, not_found="notification_not_found")

    async def work(conn: AsyncConnection) -> Notification | None:
        return await service.mark_read(conn, user_id=principal.user_id, notification_id=parsed)

    found = await run_in_transaction(state.engine, work)
    if found is None:
        # Someone else's notification answers as an unknown one does: ids cannot be probed.
        raise PayFlowError(
            "notification_not_found", f"no such notification {notification_id!r}", http_status=404
        )
    return NotificationOut.of(found)


@router.post("/notifications/read-all")
async def read_all_notifications(principal: Caller, state: State) -> ReadAllOut:
    """Mark all the caller's notifications read."""

    async def work(conn: AsyncConnection) -> ReadAllOut:
        marked = await service.mark_all_read(conn, user_id=principal.user_id)
        unread = await service.unread_count(conn, user_id=principal.user_id)
        return ReadAllOut(marked_read=marked, unread_count=unread)

    return await run_in_transaction(state.engine, work)
