"""`Idempotency-Key` (IETF httpapi draft): the database is the source of truth.

A request first claims its key (a committed `in_flight` row, inserted together with other
requests' claims in one statement); the effect's own transaction then stores the reply
in that row. So a retry replays the stored reply, a concurrent duplicate sees the claim
(409), a different body under the same key is refused (422), and a process that dies
mid-request leaves a claim that another attempt takes over after `idempotency_lock_s`,
reusing the claim's resource id so the ledger itself refuses a second effect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.api.batcher import MicroBatcher
from payflow.api.idempotency_cache import ReplyCache
from payflow.api.models import idempotency_keys as table
from payflow.api.replies import Reply
from payflow.config import Settings
from payflow.db import is_postgresql, run_in_transaction
from payflow.errors import PayFlowError
from payflow.ids import uuid7
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)

KEY_LENGTH_MAX = 255
_NS = 1_000_000_000


def fingerprint(method: str, path: str, body: Any) -> str:
    """A digest of the request: same key with a different fingerprint is a misuse."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None:
        raise PayFlowError(
            "idempotency_key_missing",
            "this request moves money: send an Idempotency-Key header (e.g. a UUID)",
            http_status=400,
        )
    if not 1 <= len(key) <= KEY_LENGTH_MAX or not key.isascii() or not key.isprintable():
        raise PayFlowError(
            "idempotency_key_invalid",
            f"an Idempotency-Key is 1-{KEY_LENGTH_MAX} printable ASCII characters",
            http_status=400,
        )
    return key


@dataclass(frozen=True, slots=True)
class Claim:
    id: uuid.UUID
    resource_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class _Request:
    scope: str
    key: str
    fingerprint: str


_Result = Claim | Reply | PayFlowError


def _in_use() -> PayFlowError:
    return PayFlowError(
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is still being processed; retry later",
        http_status=409,
    )


def _reused() -> PayFlowError:
    return PayFlowError(
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
        http_status=422,
    )


class IdempotencyStore:
    """Claims keys (batched), stores replies, replays them."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        # Replies are kept in the database for at least the TTL; Redis keeps copies for
        # the same time, so any replay inside it can skip the database.
        self._cache = (
            ReplyCache(settings.redis_url, ttl_s=settings.idempotency_ttl_s)
            if settings.redis_url
            else None
        )
        self._ttl_ns = settings.idempotency_ttl_s * _NS
        self._lock_ns = int(settings.idempotency_lock_s * _NS)
        self._local: set[tuple[str, str]] = set()
        self._batcher: MicroBatcher[_Request, _Result] = MicroBatcher(
            flush=self._claim_batch,
            size_max=settings.api_batch_size_max,
            concurrency=1 if not is_postgresql(engine) else settings.api_batch_concurrency,
            queue_max=settings.api_batch_queue_max,
            name="idempotency",
        )

    async def begin(self, scope: str, key: str, fingerprint: str) -> Claim | Reply:
        """Claim `key` for this request, or the stored reply to replay; raises 409/422."""
        local = (scope, key)
        if local in self._local:
            raise _in_use()
        if self._cache is not None:
            cached = await self._cache.get(scope, key)
            if cached is not None:
                if cached[0] != fingerprint:
                    raise _reused()
                return cached[1]
        self._local.add(local)
        try:
            result = await self._batcher.submit(_Request(scope, key, fingerprint))
        except BaseException:
            self._local.discard(local)
            raise
        if not isinstance(result, Claim):
            self._local.discard(local)
        if isinstance(result, PayFlowError):
            raise result
        return result

    def release_local(self, scope: str, key: str) -> None:
        """The request is over (its reply stored or its claim abandoned)."""
        self._local.discard((scope, key))

    async def finish(self, claim: Claim, reply: Reply) -> None:
        """Store the reply of a request that ended before reaching the ledger."""
        await run_in_transaction(self._engine, lambda conn: complete_claims(conn, [(claim, reply)]))

    async def remember(self, scope: str, key: str, fingerprint: str, reply: Reply) -> None:
        """Copy a committed reply to the fast path (if there is one)."""
        if self._cache is not None:
            await self._cache.put(scope, key, fingerprint, reply)

    async def abandon(self, claim: Claim) -> None:
        """An unexpected failure: drop the claim so the client's retry runs afresh."""
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(table).where(table.c.id == claim.id, table.c.status == "in_flight")
            )

    async def close(self) -> None:
        await self._batcher.close()
        if self._cache is not None:
            await self._cache.close()

    async def _claim_batch(self, requests: list[_Request]) -> list[_Result]:
        return await run_in_transaction(self._engine, lambda conn: self._claim(conn, requests))

    async def _claim(self, conn: AsyncConnection, requests: list[_Request]) -> list[_Result]:
        now = now_ns()
        rows: list[dict[str, Any]] = [
            {
                "id": uuid7(),
                "principal": r.scope,
                "key": r.key,
                "fingerprint": r.fingerprint,
                "status": "in_flight",
                "resource_id": uuid7(),
                "locked_until": now + self._lock_ns,
                "created_at": now,
                "expires_at": now + self._ttl_ns,
            }
            for r in requests
        ]
        dialect = postgresql if is_postgresql(conn) else sqlite
        # One statement, executed with many parameter sets: SQLAlchemy sends it as one
        # multi-row INSERT and, unlike `.values(rows)`, compiles it once per process.
        statement = (
            dialect.insert(table)
            .on_conflict_do_nothing(index_elements=["principal", "key"])
            .returning(table.c.id)
        )
        inserted = {row[0] for row in await conn.execute(statement, rows)}
        results: list[_Result] = []
        clashes = [
            (r, row) for r, row in zip(requests, rows, strict=True) if row["id"] not in inserted
        ]
        existing = {}
        if clashes:
            found = await conn.execute(
                select(table).where(
                    tuple_(table.c.principal, table.c.key).in_(
                        [(r.scope, r.key) for r, _ in clashes]
                    )
                )
            )
            existing = {(row.principal, row.key): row for row in found}
        for request, row in zip(requests, rows, strict=True):
            if row["id"] in inserted:
                results.append(Claim(row["id"], row["resource_id"]))
                continue
            results.append(
                await self._decide(
                    conn, request, existing.get((request.scope, request.key)), row, now
                )
            )
        return results

    async def _decide(
        self, conn: AsyncConnection, request: _Request, stored: Any, fresh: dict[str, Any], now: int
    ) -> _Result:
        if stored is None:
            # Deleted between our insert and our read (expiry sweep): ask to retry.
            return _in_use()
        if stored.expires_at <= now:
            # Past its retention: the key may be used afresh.
            taken = await conn.execute(
                update(table)
                .where(table.c.id == stored.id, table.c.expires_at <= now)
                .values(
                    fingerprint=request.fingerprint,
                    status="in_flight",
                    resource_id=fresh["resource_id"],
                    locked_until=fresh["locked_until"],
                    response_status=None,
                    response_body=None,
                    created_at=now,
                    expires_at=fresh["expires_at"],
                )
            )
            return Claim(stored.id, fresh["resource_id"]) if taken.rowcount == 1 else _in_use()
        if stored.fingerprint != request.fingerprint:
            return _reused()
        if stored.status == "completed":
            return Reply(stored.response_status, json.loads(stored.response_body))
        if stored.locked_until > now:
            return _in_use()
        taken = await conn.execute(
            update(table)
            .where(
                table.c.id == stored.id,
                table.c.status == "in_flight",
                table.c.locked_until == stored.locked_until,
            )
            .values(locked_until=fresh["locked_until"])
        )
        return Claim(stored.id, stored.resource_id) if taken.rowcount == 1 else _in_use()


async def complete_claims(conn: AsyncConnection, done: Sequence[tuple[Claim, Reply]]) -> None:
    """Store replies in their claims, in the caller's transaction (the effect's)."""
    if not done:
        return
    await conn.execute(
        update(table)
        .where(table.c.id == bindparam("claim_id"))
        .values(
            status="completed",
            response_status=bindparam("reply_status"),
            response_body=bindparam("reply_body"),
        ),
        [
            {
                "claim_id": claim.id,
                "reply_status": reply.status,
                "reply_body": json.dumps(reply.body, separators=(",", ":")),
            }
            for claim, reply in done
        ],
    )


async def sweep_expired(conn: AsyncConnection, *, limit: int) -> int:
    """Delete up to `limit` keys past their retention; returns how many."""
    now = now_ns()
    due = select(table.c.id).where(table.c.expires_at <= now).limit(limit)
    result = await conn.execute(delete(table).where(table.c.id.in_(due)))
    return int(result.rowcount or 0)
