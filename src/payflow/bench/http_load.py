"""A cheap HTTP/1.1 load generator for `payflow bench api`.

It shares a small machine with the API and PostgreSQL, so every request must cost it
little: requests are pre-encoded bytes (a fixed head, a unique Idempotency-Key, one of a
few pre-encoded tails), responses are parsed only as far as the status line and the body's
length, and each simulated client holds one keep-alive connection with one request in
flight. It runs in its own OS process so its CPU time can be measured apart from the
server's (`LoadResult.cpu_s`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

BODY_BYTES_MAX = 1024 * 1024
ERROR_SAMPLES_MAX = 5
TRANSPORT_ERROR = 0  # the "status" recorded when no response arrived


@dataclass(frozen=True, slots=True)
class ClientPlan:
    """One simulated client: each request is `head` + [key] + a tail picked at random."""

    head: bytes
    tails: tuple[bytes, ...]
    # Each request's Idempotency-Key is this prefix and a counter; None: no key is sent.
    key_prefix: bytes | None


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Clients against one server; requests before `start_at` (wall clock) are warm-up."""

    host: str
    port: int
    clients: tuple[ClientPlan, ...]
    start_at: float
    seconds: float
    expected_status: int
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 10.0
    seed: int = 1


@dataclass(slots=True)
class LoadResult:
    """What one run saw. Only responses completed inside the window count as `completed`."""

    seconds: float = 0.0
    completed: int = 0
    # Every request sent, warm-up and the tail after the window included; an error anywhere
    # is an error.
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    cpu_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate_per_s(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_fraction(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s * 1e6 / self.completed if self.completed else 0.0

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second in the window: 1.0 is one core fully busy."""
        return self.cpu_s / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_ns:
            return 0.0
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


def build_client(
    method: str,
    path: str,
    *,
    host: str,
    port: int,
    headers: dict[str, str],
    bodies: list[bytes],
    key_prefix: str | None,
) -> ClientPlan:
    """Pre-encode one client's requests: one tail per body, the key spliced in per request."""
    assert bodies, "at least one body (b'' for none)"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n").encode()
    lead = b""
    if key_prefix is not None:
        head += b"Idempotency-Key: "
        lead = b"\r\n"
    tails = tuple(lead + b"Content-Length: %d\r\n\r\n" % len(body) + body for body in bodies)
    prefix = key_prefix.encode() if key_prefix is not None else None
    return ClientPlan(head, tails, prefix)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one response: Content-Length, chunked, or to EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep_alive = head.startswith(b"HTTP/1.1") and b"\r\nconnection: close" not in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 17)])
        if length > BODY_BYTES_MAX:
            raise ValueError(f"response body of {length} bytes")
        return status, await reader.readexactly(length), keep_alive
    if b"\r\ntransfer-encoding: chunked" in lower:
        return status, await _read_chunked(reader), keep_alive
    if status in (204, 304) or status < 200:
        return status, b"", keep_alive
    # No length: the body runs to the end of the connection.
    return status, await reader.read(BODY_BYTES_MAX), False


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
        if len(body) + size > BODY_BYTES_MAX:
            raise ValueError("chunked response body too large")
        body += await reader.readexactly(size + 2)
        del body[-2:]
    # Trailers, if any, end with an empty line.
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return bytes(body)


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(plan: LoadPlan) -> Connection:
    async with asyncio.timeout(plan.connect_timeout_s):
        return await asyncio.open_connection(plan.host, plan.port)


def _record_error(result: LoadResult, status: int, detail: str) -> None:
    result.errors += 1
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if len(result.error_samples) < ERROR_SAMPLES_MAX:
        result.error_samples.append(f"{status}: {detail[:300]}")


async def _client(
    plan: LoadPlan,
    client: ClientPlan,
    conn: Connection | None,
    window_ns: tuple[int, int],
    seed: int,
    result: LoadResult,
) -> None:
    """One request in flight at a time until the window closes; reconnects after errors."""
    rng = random.Random(seed)
    start_ns, stop_ns = window_ns
    tails, count = client.tails, len(client.tails)
    counter = 0
    while time.perf_counter_ns() < stop_ns:
        counter += 1
        tail = tails[int(rng.random() * count)]
        if client.key_prefix is None:
            request = client.head + tail
        else:
            request = client.head + client.key_prefix + str(counter).encode() + tail
        began = time.perf_counter_ns()
        result.requests += 1
        try:
            if conn is None:
                conn = await _connect(plan)
            async with asyncio.timeout(plan.request_timeout_s):
                # One small request per connection in flight: the transport's buffer never
                # reaches its high-water mark, so there is nothing to drain.
                conn[1].write(request)
                status, body, keep_alive = await read_response(conn[0])
        except (OSError, TimeoutError, EOFError, asyncio.LimitOverrunError, ValueError) as exc:
            _record_error(result, TRANSPORT_ERROR, f"{type(exc).__name__}: {exc}")
            await _close(conn)
            conn = None
            await asyncio.sleep(0.01)  # do not spin on a server that refuses connections
            continue
        ended = time.perf_counter_ns()
        if status != plan.expected_status:
            _record_error(result, status, body.decode(errors="replace"))
        else:
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if start_ns <= ended < stop_ns:
                result.completed += 1
                result.latencies_ns.append(ended - began)
        if not keep_alive:
            await _close(conn)
            conn = None
    await _close(conn)


async def _close(conn: Connection | None) -> None:
    """Close `conn` if it is open, waiting a bounded time for the socket to go."""
    if conn is not None:
        conn[1].close()
        try:
            async with asyncio.timeout(1.0):
                await conn[1].wait_closed()
        except (OSError, TimeoutError):
            pass  # the peer may already be gone; the socket is closed either way


async def generate(plan: LoadPlan) -> LoadResult:
    """Run `plan` on the running loop: connect every client, warm up, measure the window."""
    opened = await asyncio.gather(*(_connect(plan) for _ in plan.clients), return_exceptions=True)
    conns = [c for c in opened if not isinstance(c, BaseException)]
    if len(conns) < len(opened):
        # A server that refuses some of the first connections is down, not slow: fail now.
        await asyncio.gather(*(_close(c) for c in conns))
        raise next(c for c in opened if isinstance(c, BaseException))
    wall, now_ns = time.time(), time.perf_counter_ns()
    stop_ns = now_ns + int((plan.start_at + plan.seconds - wall) * 1e9)
    # A generator that connected late measures a shorter window rather than counting
    # warm-up requests as measured ones.
    start_ns = min(stop_ns, now_ns + max(0, int((plan.start_at - wall) * 1e9)))
    result = LoadResult(seconds=(stop_ns - start_ns) / 1e9)
    tasks = [
        asyncio.create_task(
            _client(plan, client, conn, (start_ns, stop_ns), plan.seed * 100_003 + i, result)
        )
        for i, (client, conn) in enumerate(zip(plan.clients, conns, strict=True))
    ]
    await asyncio.sleep(max(0, start_ns - time.perf_counter_ns()) / 1e9)
    cpu_start = time.process_time()
    await asyncio.sleep(max(0, stop_ns - time.perf_counter_ns()) / 1e9)
    result.cpu_s = time.process_time() - cpu_start
    await asyncio.gather(*tasks)
    return result


def run_in_event_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run `main()` on uvloop when it is installed (it costs less per request), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def _process_entry(plan: LoadPlan) -> LoadResult:
    result: LoadResult = run_in_event_loop(lambda: generate(plan))
    return result


def run_load(plan: LoadPlan) -> LoadResult:
    """Run `plan` in a fresh OS process (spawned, so it inherits no threads or loop)."""
    deadline_s = max(0.0, plan.start_at - time.time()) + plan.seconds
    timeout_s = deadline_s + plan.connect_timeout_s + plan.request_timeout_s + 30
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: LoadResult = pool.apply_async(_process_entry, (plan,)).get(timeout=timeout_s)
    return result
