"""Reading payouts: one with its timeline, and a user's list."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.ledger import Cursor
from payflow.pagination import newest_first
from payflow.payouts import models
from payflow.payouts.domain import Payout
from payflow.payouts.service import payout_of
from payflow.payouts.views import payout_view
from payflow.timestamps import to_rfc3339

TIMELINE_ATTEMPTS_MAX = 100


async def timeline(conn: AsyncConnection, payout_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every step the saga took, in order, each with the bank calls made while at it (the
    latest `TIMELINE_ATTEMPTS_MAX` of them)."""
    steps = (
        await conn.execute(
            select(models.payout_steps)
            .where(models.payout_steps.c.payout_id == payout_id)
            .order_by(models.payout_steps.c.at)
        )
    ).all()
    # A bank that stays silent for days makes thousands of attempts: show the latest.
    attempts = (
        await conn.execute(
            select(models.payout_attempts)
            .where(models.payout_attempts.c.payout_id == payout_id)
            .order_by(models.payout_attempts.c.number.desc())
            .limit(TIMELINE_ATTEMPTS_MAX)
        )
    ).all()[::-1]
    entries: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        until = steps[index + 1].at if index + 1 < len(steps) else None
        calls = [
            a
            for a in attempts
            if a.started_at >= step.at and (until is None or a.started_at < until)
        ]
        entries.append(
            {
                "step": step.step,
                "at": to_rfc3339(step.at),
                "detail": step.detail,
                "attempts": [
                    {
                        "number": a.number,
                        "operation": a.operation,
                        "started_at": to_rfc3339(a.started_at),
                        "finished_at": to_rfc3339(a.finished_at),
                        "outcome": a.outcome,
                        "detail": a.detail,
                    }
                    for a in calls
                ],
            }
        )
    return entries


async def list_payouts(
    conn: AsyncConnection, *, user_id: uuid.UUID | None, limit: int, after: Cursor | None
) -> tuple[list[Payout], Cursor | None]:
    """A user's payouts (everyone's for `user_id=None`), newest first."""
    table = models.payouts
    query = select(table)
    if user_id is not None:
        query = query.where(table.c.user_id == user_id)
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return [payout_of(row) for row in rows], cursor


def detail_view(payout: Payout, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {**payout_view(payout), "timeline": steps}
