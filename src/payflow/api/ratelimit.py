"""Rate limits per principal and route: fixed windows, in Redis when configured, else in-process.

Each key's window starts at its first counted hit and lasts `window_s`, so the IETF httpapi
RateLimit headers map directly: q = limit, w = window, r = remaining, t = seconds to reset.

Semantics shared by both limiters:

- A refused hit is not counted: the count never exceeds the limit, and hammering a key that is
  out of quota neither extends its window nor uses up quota it will get back at the reset.
- `cost` must be >= 1. A cost above the policy's limit can never be allowed: it is refused
  (not raised), so callers whose cost comes from a request should bound it beforehand.
- `peek` reports `allowed` as "a hit of cost 1 would be allowed now".
- A key without a live window reports `remaining = limit` and `reset_s = window_s`: the window
  its next hit would open.
- Keys longer than `KEY_CHARS_MAX` are replaced by their SHA-256, so memory stays bounded
  whatever the caller builds keys from.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

LIMIT_MAX = 10_000_000
WINDOW_S_MAX = 86_400
KEY_CHARS_MAX = 256
COST_MAX = 2**62
# The name appears in a structured-field string and in Redis keys (":" separates parts there).
_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class Policy:
    """A quota: `limit` requests per `window_s` seconds; `name` appears in the headers."""

    name: str
    limit: int
    window_s: int

    def __post_init__(self) -> None:
        if not _POLICY_NAME.fullmatch(self.name):
            raise ValueError(f"policy name {self.name!r} must match {_POLICY_NAME.pattern}")
        _check_int("limit", self.limit, 1, LIMIT_MAX)
        _check_int("window_s", self.window_s, 1, WINDOW_S_MAX)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a hit or a peek, and the headers that tell the client about it."""

    allowed: bool
    policy: Policy
    remaining: int
    reset_s: int

    def __post_init__(self) -> None:
        assert 0 <= self.remaining <= self.policy.limit, self
        assert self.reset_s >= (1 if not self.allowed or self.remaining == 0 else 0), self

    def headers(self) -> dict[str, str]:
        """`RateLimit-Policy` and `RateLimit` (structured-field form), plus `Retry-After` when
        the request is refused."""
        name = self.policy.name
        headers = {
            "RateLimit-Policy": f'"{name}";q={self.policy.limit};w={self.policy.window_s}',
            "RateLimit": f'"{name}";r={self.remaining};t={self.reset_s}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


class RateLimiter(Protocol):
    """What the API needs from a rate limiter; see the module docstring for the semantics."""

    async def hit(self, key: str, policy: Policy, *, cost: int = 1) -> Decision:
        """Count `cost` against `key` under `policy`, unless that would exceed the quota."""
        ...

    async def peek(self, key: str, policy: Policy) -> Decision:
        """The key's current state, without counting."""
        ...

    async def reset(self, key: str, policy: Policy) -> None:
        """Forget the key's window (e.g. its failed logins after a successful one)."""
        ...

    async def close(self) -> None:
        """Release the limiter's resources."""
        ...


def create_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Redis-backed when a URL is given (limits shared by all processes), else in-process."""
    if redis_url:
        return RedisRateLimiter(redis_url)
    return MemoryRateLimiter()


def _check_int(name: str, value: int, low: int, high: int) -> None:
    # bool is an int to Python, and a float count would drift; both are caller bugs.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")


def _check_cost(cost: int) -> None:
    # Any bound above LIMIT_MAX serves; this one still compares exactly enough in Lua's doubles.
    _check_int("cost", cost, 1, COST_MAX)


def _bounded_key(key: str) -> str:
    if len(key) <= KEY_CHARS_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def _decision(allowed: bool, policy: Policy, count: int, ttl_ms: int) -> Decision:
    """The decision for a key holding `count` with `ttl_ms` left (<= 0: no live window)."""
    # Clamped: a lowered limit can leave a live Redis counter above the new one.
    remaining = min(policy.limit, max(0, policy.limit - count))
    reset_s = -(-ttl_ms // 1000) if ttl_ms > 0 else policy.window_s
    return Decision(allowed, policy, remaining, reset_s)


@dataclass(slots=True)
class _Window:
    count: int
    start_ms: int
    end_ms: int


class MemoryRateLimiter:
    """In-process limits, for the embedded single-process default.

    Safe within one event loop: no method awaits, so each is atomic. Holds at most `keys_max`
    windows: when full, expired windows go first, then the oldest (earliest start).
    """

    def __init__(
        self, *, keys_max: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        _check_int("keys_max", keys_max, 1, 100_000_000)
        self._keys_max = keys_max
        self._clock = clock
        # One queue per window length: within it, start order is also expiry order, so the
        # expired and the oldest windows are always at the fronts.
        self._queues: dict[int, OrderedDict[tuple[str, str], _Window]] = {}

    def keys_count(self) -> int:
        """The number of windows held (expired ones included until they are dropped)."""
        return sum(len(queue) for queue in self._queues.values())

    async def hit(self, key: str, policy: Policy, *, cost: int = 1) -> Decision:
        """Count `cost` against `key` unless that would exceed the quota (then nothing is
        counted)."""
        _check_cost(cost)
        now_ms = self._now_ms()
        window = self._live(key, policy, now_ms)
        count = window.count if window else 0
        ttl_ms = window.end_ms - now_ms if window else 0
        if count + cost > policy.limit:
            return _decision(False, policy, count, ttl_ms)
        if window is None:
            window = self._open(key, policy, now_ms)
            ttl_ms = window.end_ms - now_ms
        window.count += cost
        return _decision(True, policy, window.count, ttl_ms)

    async def peek(self, key: str, policy: Policy) -> Decision:
        """The key's current state, without counting."""
        now_ms = self._now_ms()
        window = self._live(key, policy, now_ms)
        if window is None:
            return _decision(True, policy, 0, 0)
        return _decision(window.count < policy.limit, policy, window.count, window.end_ms - now_ms)

    async def reset(self, key: str, policy: Policy) -> None:
        """Forget the key's window under this policy."""
        queue = self._queues.get(policy.window_s * 1000)
        if queue is not None:
            queue.pop((policy.name, _bounded_key(key)), None)

    async def close(self) -> None:
        """Drop every window."""
        self._queues.clear()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _live(self, key: str, policy: Policy, now_ms: int) -> _Window | None:
        queue = self._queues.get(policy.window_s * 1000)
        if queue is None:
            return None
        entry = (policy.name, _bounded_key(key))
        window = queue.get(entry)
        if window is not None and window.end_ms <= now_ms:
            del queue[entry]
            return None
        return window

    def _open(self, key: str, policy: Policy, now_ms: int) -> _Window:
        window_ms = policy.window_s * 1000
        queue = self._queues.setdefault(window_ms, OrderedDict())
        _drop_expired(queue, now_ms)
        if self.keys_count() >= self._keys_max:
            self._make_room(now_ms)
        window = _Window(count=0, start_ms=now_ms, end_ms=now_ms + window_ms)
        queue[(policy.name, _bounded_key(key))] = window
        return window

    def _make_room(self, now_ms: int) -> None:
        for queue in self._queues.values():
            _drop_expired(queue, now_ms)
        if self.keys_count() >= self._keys_max:
            fronts = [queue for queue in self._queues.values() if queue]
            oldest = min(fronts, key=lambda queue: next(iter(queue.values())).start_ms)
            oldest.popitem(last=False)


def _drop_expired(queue: OrderedDict[tuple[str, str], _Window], now_ms: int) -> None:
    while queue:
        window = next(iter(queue.values()))
        if window.end_ms > now_ms:
            return
        queue.popitem(last=False)


# KEYS[1]: the counter; ARGV: cost, limit, window_ms. Returns {allowed, count, ttl_ms}.
# A key without a TTL (PTTL -1) cannot come from this script; it is treated as no window
# so that it cannot hold a count forever.
_HIT_LUA = """
local cost = tonumber(ARGV[1])
local ttl_ms = redis.call('PTTL', KEYS[1])
local count = 0
if ttl_ms > 0 then
  count = tonumber(redis.call('GET', KEYS[1]))
end
if count + cost > tonumber(ARGV[2]) then
  return {0, count, ttl_ms}
end
if ttl_ms > 0 then
  return {1, redis.call('INCRBY', KEYS[1], cost), ttl_ms}
end
redis.call('SET', KEYS[1], cost, 'PX', ARGV[3])
return {1, cost, tonumber(ARGV[3])}
"""

# KEYS[1]: the counter. Returns {count, ttl_ms}.
_PEEK_LUA = """
local ttl_ms = redis.call('PTTL', KEYS[1])
if ttl_ms <= 0 then
  return {0, ttl_ms}
end
return {tonumber(redis.call('GET', KEYS[1])), ttl_ms}
"""

# The most latency a rate-limit check may add to a request before it fails open.
REDIS_TIMEOUT_S = 0.5
REDIS_CONNECTIONS_MAX = 64
FAILURE_WARNING_INTERVAL_S = 10.0


class RedisRateLimiter:
    """Limits shared by every process through Redis; one Lua script call per check.

    Fails open: when Redis is unreachable, slow (over `REDIS_TIMEOUT_S`) or errs, requests are
    allowed (`remaining = limit`) and a warning is logged at most every 10 s. A rate limiter
    outage must not take payments down; login lockouts are not enforced meanwhile either.
    """

    def __init__(self, url: str, *, prefix: str = "payflow:rl:") -> None:
        # One quick retry heals a pooled connection that Redis closed; more would only delay.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_CONNECTIONS_MAX,
            timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis = Redis.from_pool(pool)
        self._prefix = prefix
        self._hit_script = self._redis.register_script(_HIT_LUA)
        self._peek_script = self._redis.register_script(_PEEK_LUA)
        self._warned_at: float | None = None
        self._failures_unreported = 0

    async def hit(self, key: str, policy: Policy, *, cost: int = 1) -> Decision:
        """Count `cost` against `key` unless that would exceed the quota (then nothing is
        counted)."""
        _check_cost(cost)
        args = (cost, policy.limit, policy.window_s * 1000)
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                allowed, count, ttl_ms = await self._hit_script([self._key(key, policy)], args)
        except (RedisError, OSError) as error:
            return self._fail_open(policy, error)
        return _decision(allowed == 1, policy, int(count), int(ttl_ms))

    async def peek(self, key: str, policy: Policy) -> Decision:
        """The key's current state, without counting."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                count, ttl_ms = await self._peek_script([self._key(key, policy)])
        except (RedisError, OSError) as error:
            return self._fail_open(policy, error)
        return _decision(int(count) < policy.limit, policy, int(count), int(ttl_ms))

    async def reset(self, key: str, policy: Policy) -> None:
        """Forget the key's window under this policy (best effort when Redis is down)."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                await self._redis.delete(self._key(key, policy))
        except (RedisError, OSError) as error:
            self._fail_open(policy, error)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    def _key(self, key: str, policy: Policy) -> str:
        # The policy's window is part of the key so that changing it starts fresh counters.
        return f"{self._prefix}{policy.name}:{policy.window_s}:{_bounded_key(key)}"

    def _fail_open(self, policy: Policy, error: BaseException) -> Decision:
        self._failures_unreported += 1
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= FAILURE_WARNING_INTERVAL_S:
            logger.warning(
                "rate limiter: Redis failed %d time(s) since the last warning; allowing"
                " requests (fail open): %r",
                self._failures_unreported,
                error,
            )
            self._warned_at = now
            self._failures_unreported = 0
        return Decision(True, policy, policy.limit, policy.window_s)
