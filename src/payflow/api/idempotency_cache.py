"""Redis as a fast path for idempotent replays (never the source of truth).

A stored reply is copied to Redis after its transaction commits; a retry finds it there
without touching the database. A miss, or Redis being down, simply falls through to the
database path: correctness never depends on Redis.
"""

from __future__ import annotations

import json
import logging
import time

import redis.asyncio as redis

from payflow.api.replies import Reply

log = logging.getLogger(__name__)

_TIMEOUT_S = 0.25
_WARN_INTERVAL_S = 10.0


class ReplyCache:
    def __init__(self, url: str, *, ttl_s: int, prefix: str = "payflow:idem:") -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S, max_connections=64
        )
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._warned_at = 0.0

    def _key(self, scope: str, key: str) -> str:
        return f"{self._prefix}{scope}:{key}"

    def _warn(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_INTERVAL_S:
            self._warned_at = now
            log.warning("idempotency cache unavailable, using the database only: %s", error)

    async def get(self, scope: str, key: str) -> tuple[str, Reply] | None:
        """(fingerprint, reply) stored for this key, or None (miss or Redis down)."""
        try:
            raw = await self._client.get(self._key(scope, key))
        except (redis.RedisError, OSError) as error:
            self._warn(error)
            return None
        if raw is None:
            return None
        stored = json.loads(raw)
        return stored["fingerprint"], Reply(stored["status"], stored["body"])

    async def put(self, scope: str, key: str, fingerprint: str, reply: Reply) -> None:
        value = json.dumps(
            {"fingerprint": fingerprint, "status": reply.status, "body": reply.body},
            separators=(",", ":"),
        )
        try:
            await self._client.set(self._key(scope, key), value, ex=self._ttl_s)
        except (redis.RedisError, OSError) as error:
            self._warn(error)

    async def close(self) -> None:
        await self._client.aclose()
