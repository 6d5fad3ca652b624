"""Rate limits: the same behaviour from the in-process limiter and the Redis one.

Every behavioural test runs against both through the `harness` fixture. Redis is real
(started if down, never skipped); each test gets its own key prefix and deletes its keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from payflow.api.ratelimit import (
    KEY_CHARS_MAX,
    REDIS_TIMEOUT_S,
    Decision,
    MemoryRateLimiter,
    Policy,
    RateLimiter,
    RedisRateLimiter,
    create_rate_limiter,
)
from tests.services import REDIS_HOST, REDIS_PORT, ensure_redis

REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
BACKENDS = ("memory", "redis")
LOGGER = "payflow.api.ratelimit"

DEFAULT = Policy("default", limit=600, window_s=60)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Harness:
    backend: str
    limiter: RateLimiter
    key_prefix: str
    # Lets time pass: the memory limiter's clock moves, Redis is waited on for real.
    advance: Callable[[float], Awaitable[None]]

    def key(self, name: str) -> str:
        return f"{self.key_prefix}{name}"


async def delete_redis_keys(pattern: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=pattern)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def limiter_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


@pytest.fixture(params=BACKENDS)
async def harness(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Harness]:
    key_prefix = f"user:{uuid.uuid4()}:"
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.now_s += seconds

        memory = MemoryRateLimiter(clock=clock)
        yield Harness("memory", memory, key_prefix, advance)
        await memory.close()
        return
    ensure_redis()
    redis_prefix = f"payflow:test:rl:{uuid.uuid4().hex}:"
    redis = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
    try:
        yield Harness("redis", redis, key_prefix, asyncio.sleep)
    finally:
        await redis.close()
        await delete_redis_keys(f"{redis_prefix}*")
    # A test that passed by failing open would prove nothing.
    assert limiter_warnings(caplog) == []


async def hits(limiter: RateLimiter, key: str, policy: Policy, count: int) -> list[Decision]:
    return [await limiter.hit(key, policy) for _ in range(count)]


class TestCounting:
    async def test_remaining_counts_down(self, harness: Harness) -> None:
        policy = Policy("default", limit=3, window_s=60)
        decisions = await hits(harness.limiter, harness.key("a"), policy, 3)
        assert [d.allowed for d in decisions] == [True, True, True]
        assert [d.remaining for d in decisions] == [2, 1, 0]
        assert all(d.policy == policy for d in decisions)

    async def test_refused_exactly_after_limit_and_refusals_are_not_counted(
        self, harness: Harness
    ) -> None:
        policy = Policy("default", limit=5, window_s=60)
        decisions = await hits(harness.limiter, harness.key("a"), policy, 8)
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
        assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0, 0]
        assert all(1 <= d.reset_s <= 60 for d in decisions[5:])

    async def test_cost_above_one(self, harness: Harness) -> None:
        policy = Policy("default", limit=10, window_s=60)
        key = harness.key("a")
        first = await harness.limiter.hit(key, policy, cost=4)
        second = await harness.limiter.hit(key, policy, cost=4)
        assert (first.allowed, first.remaining) == (True, 6)
        assert (second.allowed, second.remaining) == (True, 2)
        # Too dear for what is left: refused, and nothing is taken from the 2 remaining.
        third = await harness.limiter.hit(key, policy, cost=3)
        assert (third.allowed, third.remaining) == (False, 2)
        assert third.headers()["Retry-After"] == str(third.reset_s)
        last = await harness.limiter.hit(key, policy, cost=2)
        assert (last.allowed, last.remaining) == (True, 0)

    async def test_cost_above_the_limit_is_refused_and_not_counted(self, harness: Harness) -> None:
        policy = Policy("default", limit=3, window_s=60)
        key = harness.key("a")
        refused = await harness.limiter.hit(key, policy, cost=4)
        assert (refused.allowed, refused.remaining, refused.reset_s) == (False, 3, 60)
        assert refused.headers()["Retry-After"] == "60"
        assert (await harness.limiter.hit(key, policy, cost=3)).allowed

    async def test_concurrent_hits_allow_exactly_the_limit(self, harness: Harness) -> None:
        policy = Policy("default", limit=20, window_s=60)
        key = harness.key("a")
        decisions = await asyncio.gather(*(harness.limiter.hit(key, policy) for _ in range(50)))
        allowed = [d for d in decisions if d.allowed]
        assert len(allowed) == 20
        assert sorted(d.remaining for d in allowed) == list(range(20))
        assert (await harness.limiter.peek(key, policy)).remaining == 0


class TestHeaders:
    async def test_allowed_headers_are_exact(self, harness: Harness) -> None:
        decision = await harness.limiter.hit(harness.key("a"), DEFAULT)
        assert decision.headers() == {
            "RateLimit-Policy": '"default";q=600;w=60',
            "RateLimit": '"default";r=599;t=60',
        }

    async def test_refused_headers_are_exact(self, harness: Harness) -> None:
        policy = Policy("login-failures", limit=1, window_s=900)
        key = harness.key("alice@example.com")
        await harness.limiter.hit(key, policy)
        refused = await harness.limiter.hit(key, policy)
        assert refused.headers() == {
            "RateLimit-Policy": '"login-failures";q=1;w=900',
            "RateLimit": '"login-failures";r=0;t=900',
            "Retry-After": "900",
        }

    async def test_retry_after_only_on_refusal_and_equal_to_reset(self, harness: Harness) -> None:
        policy = Policy("auth", limit=3, window_s=30)
        for decision in await hits(harness.limiter, harness.key("a"), policy, 6):
            headers = decision.headers()
            assert headers["RateLimit"] == f'"auth";r={decision.remaining};t={decision.reset_s}'
            if decision.allowed:
                assert "Retry-After" not in headers
            else:
                assert decision.reset_s >= 1
                assert headers["Retry-After"] == str(decision.reset_s)

    async def test_untouched_key_reports_a_full_quota_and_a_whole_window(
        self, harness: Harness
    ) -> None:
        decision = await harness.limiter.peek(harness.key("new"), DEFAULT)
        assert (decision.allowed, decision.remaining, decision.reset_s) == (True, 600, 60)
        assert "Retry-After" not in decision.headers()


class TestWindow:
    async def test_window_resets_at_its_end_and_refusals_do_not_extend_it(
        self, harness: Harness
    ) -> None:
        policy = Policy("default", limit=2, window_s=1)
        key = harness.key("a")
        assert [d.allowed for d in await hits(harness.limiter, key, policy, 2)] == [True, True]
        await harness.advance(0.5)
        refused = await harness.limiter.hit(key, policy)
        assert (refused.allowed, refused.reset_s) == (False, 1)
        await harness.advance(0.6)
        fresh = await harness.limiter.hit(key, policy)
        assert (fresh.allowed, fresh.remaining, fresh.reset_s) == (True, 1, 1)


class TestPeekAndReset:
    async def test_peek_does_not_count(self, harness: Harness) -> None:
        policy = Policy("login-failures", limit=2, window_s=900)
        key = harness.key("alice@example.com")
        for _ in range(5):
            assert (await harness.limiter.peek(key, policy)).remaining == 2
        await harness.limiter.hit(key, policy)
        for _ in range(5):
            peeked = await harness.limiter.peek(key, policy)
            assert (peeked.allowed, peeked.remaining) == (True, 1)
        await harness.limiter.hit(key, policy)
        locked = await harness.limiter.peek(key, policy)
        assert (locked.allowed, locked.remaining) == (False, 0)
        assert locked.headers()["Retry-After"] == str(locked.reset_s)
        assert 1 <= locked.reset_s <= 900

    async def test_reset_forgets_the_key(self, harness: Harness) -> None:
        policy = Policy("login-failures", limit=3, window_s=900)
        key = harness.key("alice@example.com")
        await hits(harness.limiter, key, policy, 3)
        assert not (await harness.limiter.peek(key, policy)).allowed
        await harness.limiter.reset(key, policy)
        peeked = await harness.limiter.peek(key, policy)
        assert (peeked.allowed, peeked.remaining) == (True, 3)
        assert (await harness.limiter.hit(key, policy)).remaining == 2
        await harness.limiter.reset(harness.key("never-seen"), policy)

    async def test_reset_leaves_other_policies_alone(self, harness: Harness) -> None:
        failures = Policy("login-failures", limit=3, window_s=900)
        key = harness.key("a")
        await harness.limiter.hit(key, failures)
        await harness.limiter.hit(key, DEFAULT)
        await harness.limiter.reset(key, DEFAULT)
        assert (await harness.limiter.peek(key, failures)).remaining == 2


class TestIndependence:
    async def test_keys_are_independent(self, harness: Harness) -> None:
        policy = Policy("default", limit=2, window_s=60)
        await hits(harness.limiter, harness.key("a"), policy, 3)
        other = await harness.limiter.hit(harness.key("b"), policy)
        assert (other.allowed, other.remaining) == (True, 1)

    async def test_policies_on_the_same_key_are_independent(self, harness: Harness) -> None:
        key = harness.key("a")
        tight = Policy("default", limit=1, window_s=60)
        auth = Policy("auth", limit=5, window_s=60)
        longer = Policy("default", limit=1, window_s=120)
        assert (await harness.limiter.hit(key, tight)).allowed
        assert not (await harness.limiter.hit(key, tight)).allowed
        assert (await harness.limiter.hit(key, auth)).remaining == 4
        # Same name, other window: its own counter, so a changed setting starts fresh.
        assert (await harness.limiter.hit(key, longer)).allowed

    async def test_long_keys_are_bounded_and_still_distinct(self, harness: Harness) -> None:
        policy = Policy("default", limit=1, window_s=60)
        long_a = harness.key("a" * 10 * KEY_CHARS_MAX)
        long_b = harness.key("a" * (10 * KEY_CHARS_MAX - 1) + "b")
        assert (await harness.limiter.hit(long_a, policy)).allowed
        assert not (await harness.limiter.hit(long_a, policy)).allowed
        assert (await harness.limiter.hit(long_b, policy)).allowed


class TestInvalid:
    @pytest.mark.parametrize(
        ("limit", "window_s"), [(0, 60), (-1, 60), (10_000_001, 60), (5, 0), (5, -1), (5, 86_401)]
    )
    def test_out_of_range_policy(self, limit: int, window_s: int) -> None:
        with pytest.raises(ValueError, match="must be between"):
            Policy("default", limit=limit, window_s=window_s)

    @pytest.mark.parametrize("name", ["", " ", "a b", 'a"b', "a\\b", "a:b", "-x", "é", "x" * 65])
    def test_bad_policy_name(self, name: str) -> None:
        with pytest.raises(ValueError, match="policy name"):
            Policy(name, limit=1, window_s=1)

    @pytest.mark.parametrize(("limit", "window_s"), [(5.0, 60), (True, 60), (5, 1.5), ("5", 60)])
    def test_non_int_policy(self, limit: object, window_s: object) -> None:
        with pytest.raises(TypeError, match="must be an int"):
            Policy("default", limit=limit, window_s=window_s)  # type: ignore[arg-type]

    @pytest.mark.parametrize("cost", [0, -1, -100])
    async def test_cost_below_one(self, harness: Harness, cost: int) -> None:
        with pytest.raises(ValueError, match="cost"):
            await harness.limiter.hit(harness.key("a"), DEFAULT, cost=cost)
        assert (await harness.limiter.peek(harness.key("a"), DEFAULT)).remaining == 600

    async def test_non_int_cost(self, harness: Harness) -> None:
        with pytest.raises(TypeError, match="cost"):
            await harness.limiter.hit(harness.key("a"), DEFAULT, cost=1.5)  # type: ignore[arg-type]

    def test_keys_max_below_one(self) -> None:
        with pytest.raises(ValueError, match="keys_max"):
            MemoryRateLimiter(keys_max=0)


class TestMemoryBound:
    async def test_keys_max_holds_under_ten_times_the_keys(self) -> None:
        clock = FakeClock()
        limiter = MemoryRateLimiter(keys_max=100, clock=clock)
        policies = [DEFAULT, Policy("auth", limit=5, window_s=30)]
        for i in range(1000):
            await limiter.hit(f"user:{i}", policies[i % 2])
            clock.now_s += 0.01
            assert limiter.keys_count() <= 100
        assert limiter.keys_count() == 100
        # The newest windows are the ones kept.
        assert (await limiter.peek("user:999", policies[1])).remaining == 4
        assert (await limiter.peek("user:0", policies[0])).remaining == 600

    async def test_expired_windows_go_before_older_live_ones(self) -> None:
        clock = FakeClock()
        limiter = MemoryRateLimiter(keys_max=10, clock=clock)
        short = Policy("short", limit=5, window_s=1)
        for i in range(5):
            await limiter.hit(f"long:{i}", DEFAULT)
        for i in range(5):
            await limiter.hit(f"short:{i}", short)
        clock.now_s += 2
        for i in range(5):
            await limiter.hit(f"new:{i}", DEFAULT)
        assert limiter.keys_count() == 10
        for i in range(5):
            assert (await limiter.peek(f"long:{i}", DEFAULT)).remaining == 599

    async def test_peek_never_adds_keys(self) -> None:
        limiter = MemoryRateLimiter(keys_max=10)
        for i in range(100):
            await limiter.peek(f"user:{i}", DEFAULT)
        assert limiter.keys_count() == 0


class TestRedis:
    async def test_counter_layout_and_expiry(self) -> None:
        ensure_redis()
        prefix = f"payflow:test:rl:{uuid.uuid4().hex}:"
        limiter = RedisRateLimiter(REDIS_URL, prefix=prefix)
        client = Redis.from_url(REDIS_URL)
        try:
            await limiter.hit("user:1:POST /v1/transfers", DEFAULT, cost=3)
            stored = f"{prefix}default:60:user:1:POST /v1/transfers"
            assert await client.get(stored) == b"3"
            assert 0 < await client.pttl(stored) <= 60_000
        finally:
            await client.aclose()
            await limiter.close()
            await delete_redis_keys(f"{prefix}*")

    async def test_unreachable_redis_fails_open_and_warns_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
        try:
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                for _ in range(3):
                    decision = await limiter.hit("user:1", DEFAULT)
                    assert (decision.allowed, decision.remaining) == (True, 600)
                    assert "Retry-After" not in decision.headers()
                    assert (await limiter.peek("user:1", DEFAULT)).allowed
                    await limiter.reset("user:1", DEFAULT)
                assert len(limiter_warnings(caplog)) == 1
                # Ten seconds later the outage is reported again, with the failures between.
                limiter._warned_at = time.monotonic() - 10
                await limiter.hit("user:1", DEFAULT)
            warnings = limiter_warnings(caplog)
            assert len(warnings) == 2
            assert "9 time(s)" in warnings[1].getMessage()
        finally:
            await limiter.close()

    async def test_unresponsive_redis_fails_open_within_the_timeout(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0")
        try:
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                started = time.monotonic()
                decision = await limiter.hit("user:1", DEFAULT)
                elapsed_s = time.monotonic() - started
            assert decision.allowed
            assert elapsed_s < REDIS_TIMEOUT_S + 0.5
            assert len(limiter_warnings(caplog)) == 1
        finally:
            await limiter.close()
            server.close()
            await server.wait_closed()


class TestCreate:
    async def test_memory_without_a_url(self) -> None:
        assert isinstance(create_rate_limiter(None), MemoryRateLimiter)
        assert isinstance(create_rate_limiter(""), MemoryRateLimiter)

    async def test_redis_with_a_url(self) -> None:
        limiter = create_rate_limiter(REDIS_URL)
        assert isinstance(limiter, RedisRateLimiter)
        await limiter.close()
