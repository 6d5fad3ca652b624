"""`Idempotency-Key` (IETF httpapi draft): the database is the source of truth.

A request claims its key with an `in_flight` row (inserted together with other requests'
claims in one statement) and its effect stores the reply in that row. Ledger requests do
both in their batch's one transaction (`claim_keys`, then the ledger, then
`complete_claims`): a crash leaves nothing, and a concurrent duplicate in another process
waits for the first's commit on the unique index, then replays its reply. Requests whose
effect is rows and events (`IdempotencyStore.begin`) commit the claim first. Either way a
retry replays the stored reply, a concurrent duplicate in the same process is 409, a
different body under the same key is 422, and a committed claim left by a dead process
is taken over after `idempotency_lock_s`, reusing its resource id so the effect itself
refuses to happen twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.api.batcher import MicroBatcher
from payflow.api.idempotency_cache import ReplyCache
from payflow.api.models import idempotency_keys as table
from payflow.api.replies import Reply
from payflow.bulk import GuardedInsert, RowUpdates, insert_new, write_rows
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
class KeyRequest:
    """A request's key and fingerprint, and the resource id its effect uses if the key is
    new (a takeover of a stale claim uses the claim's own resource id instead)."""

    scope: str
    key: str
    fingerprint: str
    resource_id: uuid.UUID


ClaimResult = Claim | Reply | PayFlowError


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
        self._batcher: MicroBatcher[KeyRequest, ClaimResult] = MicroBatcher(
            flush=self._claim_batch,
            size_max=settings.api_batch_size_max,
            concurrency=1 if not is_postgresql(engine) else settings.api_batch_concurrency,
            queue_max=settings.api_batch_queue_max,
            name="idempotency",
        )

    async def begin(self, scope: str, key: str, fingerprint: str) -> Claim | Reply:
        """Claim `key` for this request in a transaction of its own (committed before the
        effect runs), or the stored reply to replay; raises 409/422."""
        cached = await self.cached_reply(scope, key, fingerprint)
        if cached is not None:
            return cached
        self.hold_local(scope, key)
        try:
            result = await self._batcher.submit(KeyRequest(scope, key, fingerprint, uuid7()))
        except BaseException:
            self.release_local(scope, key)
            raise
        if not isinstance(result, Claim):
            self.release_local(scope, key)
        if isinstance(result, PayFlowError):
            raise result
        return result

    def release_local(self, scope: str, key: str) -> None:
        """The request is over (its reply stored or its claim abandoned)."""
        self._local.discard((scope, key))

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

    def hold_local(self, scope: str, key: str) -> None:
        """Mark the key in progress in this process; 409 if it already is."""
        local = (scope, key)
        if local in self._local:
            raise _in_use()
        self._local.add(local)

    async def cached_reply(self, scope: str, key: str, fingerprint: str) -> Reply | None:
        """The fast path's copy of a committed reply (422 if it was for another request)."""
        if self._cache is None:
            return None
        cached = await self._cache.get(scope, key)
        if cached is None:
            return None
        if cached[0] != fingerprint:
            raise _reused()
        return cached[1]

    def completed(self, done: Sequence[tuple[Claim, KeyRequest, Reply]]) -> GuardedInsert:
        """`new_completed_keys` with this store's retention."""
        return new_completed_keys(done, ttl_ns=self._ttl_ns)

    async def claims(
        self, conn: AsyncConnection, requests: Sequence[KeyRequest]
    ) -> list[ClaimResult]:
        """`claim_keys` in the caller's transaction, with this store's lock and retention."""
        return await claim_keys(conn, requests, lock_ns=self._lock_ns, ttl_ns=self._ttl_ns)

    async def _claim_batch(self, requests: list[KeyRequest]) -> list[ClaimResult]:
        return await run_in_transaction(self._engine, lambda conn: self.claims(conn, requests))


async def claim_keys(
    conn: AsyncConnection, requests: Sequence[KeyRequest], *, lock_ns: int, ttl_ns: int
) -> list[ClaimResult]:
    """Claim each request's key in the caller's transaction, in one statement.

    Per request: a `Claim` (its own resource id if the key is new or past its retention,
    the stored one when taking over a stale claim), the stored `Reply` to replay, or the
    409/422 error. Keys are inserted in (scope, key) order, so two transactions claiming
    overlapping keys wait for each other in one order and cannot deadlock.
    """
    now = now_ns()
    order = sorted(range(len(requests)), key=lambda i: (requests[i].scope, requests[i].key))
    rows: list[dict[str, Any]] = [{} for _ in requests]
    for i in order:
        r = requests[i]
        rows[i] = {
            "id": uuid7(),
            "principal": r.scope,
            "key": r.key,
            "fingerprint": r.fingerprint,
            "status": "in_flight",
            "resource_id": r.resource_id,
            "locked_until": now + lock_ns,
            "created_at": now,
            "expires_at": now + ttl_ns,
        }
    inserted = await insert_new(
        conn, table, [rows[i] for i in order], unique=("principal", "key"), key="id"
    )
    clashes = [r for r, row in zip(requests, rows, strict=True) if row["id"] not in inserted]
    existing = {}
    if clashes:
        found = await conn.execute(
            select(table).where(
                tuple_(table.c.principal, table.c.key).in_([(r.scope, r.key) for r in clashes])
            )
        )
        existing = {(row.principal, row.key): row for row in found}
    results: list[ClaimResult] = []
    for request, row in zip(requests, rows, strict=True):
        if row["id"] in inserted:
            results.append(Claim(row["id"], request.resource_id))
            continue
        stored = existing.get((request.scope, request.key))
        results.append(await _decide(conn, request, stored, row, now))
    return results


async def _decide(
    conn: AsyncConnection, request: KeyRequest, stored: Any, fresh: dict[str, Any], now: int
) -> ClaimResult:
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
                resource_id=request.resource_id,
                locked_until=fresh["locked_until"],
                response_status=None,
                response_body=None,
                created_at=now,
                expires_at=fresh["expires_at"],
            )
        )
        return Claim(stored.id, request.resource_id) if taken.rowcount == 1 else _in_use()
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


def new_completed_keys(
    done: Sequence[tuple[Claim, KeyRequest, Reply]], *, ttl_ns: int
) -> GuardedInsert:
    """Keys stored complete, with their replies, by the transaction of their effect: the
    insert that a batch makes instead of claiming the keys first (`claim_keys`) and
    completing the claims after. If any key is taken, the write fails (`RowsTaken`) and
    the batch is rolled back. In (scope, key) order, as `claim_keys` inserts."""
    now = now_ns()
    rows = [
        {
            "id": claim.id,
            "principal": request.scope,
            "key": request.key,
            "fingerprint": request.fingerprint,
            "status": "completed",
            "resource_id": claim.resource_id,
            "locked_until": now,
            "response_status": reply.status,
            "response_body": reply.encoded(),
            "created_at": now,
            "expires_at": now + ttl_ns,
        }
        for claim, request, reply in sorted(done, key=lambda d: (d[1].scope, d[1].key))
    ]
    return GuardedInsert(table, ("principal", "key"), rows)


def claim_completions(done: Sequence[tuple[Claim, Reply]]) -> RowUpdates:
    """The update that stores replies in their claims (see `complete_claims`)."""
    return RowUpdates(
        table,
        "id",
        [
            {
                "id": claim.id,
                "status": "completed",
                "response_status": reply.status,
                "response_body": reply.encoded(),
            }
            for claim, reply in done
        ],
    )


async def complete_claims(conn: AsyncConnection, done: Sequence[tuple[Claim, Reply]]) -> None:
    """Store replies in their claims, in the caller's transaction (the effect's)."""
    await write_rows(conn, {}, [claim_completions(done)])


async def sweep_expired(conn: AsyncConnection, *, limit: int) -> int:
    """Delete up to `limit` keys past their retention; returns how many."""
    now = now_ns()
    due = select(table.c.id).where(table.c.expires_at <= now).limit(limit)
    result = await conn.execute(delete(table).where(table.c.id.in_(due)))
    return int(result.rowcount or 0)
