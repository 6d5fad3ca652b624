"""`payflow api --workers N`: workers start together and share the connections.

A real supervisor with two worker processes on PostgreSQL. Connections opened together
(as a client's pool or a load balancer opens them) must spread over both workers; a
worker that dies must not leave connections queued on a socket nobody accepts; a port
already in use is an error at once; the server's ledger batches in flight are split
among its workers. Processes starting together on a fresh database create its first
signing key once (system accounts: tests/test_db.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil  # type: ignore[import-untyped]
import pytest
from sqlalchemy import select

from payflow.db import create_engine
from payflow.identity.models import signing_keys
from payflow.identity.tokens import ensure_signing_key
from tests.conftest import migrated_pg_database
from tests.services import free_port

REQUEST = b"GET /health HTTP/1.1\r\nHost: payflow\r\n\r\n"


def _env(pg_url: str) -> dict[str, str]:
    return {**os.environ, "PAYFLOW_DATABASE_URL": pg_url, "PAYFLOW_AUDIT_INTERVAL_S": "0"}


def _answered(conn: socket.socket) -> socket.socket:
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(4096)
        assert chunk, "the server closed the connection without an answer"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return conn


def _get_health(port: int, *, timeout_s: float = 5.0) -> socket.socket:
    """A keep-alive connection that has had one answer to GET /health."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    conn.sendall(REQUEST)
    return _answered(conn)


def _burst(port: int, count: int) -> list[socket.socket]:
    """`count` connections opened at once, then one request on each (a pool's start)."""
    connections = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    for conn in connections:
        conn.sendall(REQUEST)
    return [_answered(conn) for conn in connections]


def _workers(supervisor: psutil.Process) -> list[psutil.Process]:
    # uvicorn spawns its workers through multiprocessing, which may add a helper
    # process (the resource tracker): workers are the children that listen on the port.
    return [child for child in supervisor.children() if child.net_connections("tcp")]


def _wait_for_workers(supervisor: psutil.Process, port: int, count: int) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listening = [
            w.pid
            for w in _workers(supervisor)
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == port
                for c in w.net_connections("tcp")
            )
        ]
        if len(listening) == count:
            try:
                _get_health(port, timeout_s=2).close()
                return listening
            except OSError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"{count} workers were not listening on {port} in time")


def _connections_per_worker(supervisor: psutil.Process, port: int) -> dict[int, int]:
    return {
        w.pid: sum(
            1
            for c in w.net_connections("tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
        for w in _workers(supervisor)
    }


@contextlib.contextmanager
def _serving(pg_url: str, workers: int, **env: str) -> Iterator[tuple[psutil.Process, int]]:
    """`payflow api --workers N` on a free port, every worker listening."""
    port = free_port()
    command = [sys.executable, "-m", "payflow.cli", "api", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env={**_env(pg_url), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        supervisor = psutil.Process(process.pid)
        if workers > 1:
            _wait_for_workers(supervisor, port, workers)
        else:
            _wait_serving(port)
        yield supervisor, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_serving(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _get_health(port, timeout_s=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"payflow api was not serving on {port} in time")


@pytest.fixture
def two_workers(pg_url: str) -> Iterator[tuple[psutil.Process, int]]:
    with _serving(pg_url, 2) as serving:
        yield serving


def test_connections_opened_together_spread_over_both_workers(
    two_workers: tuple[psutil.Process, int],
) -> None:
    supervisor, port = two_workers
    connections = _burst(port, 32)
    try:
        per_worker = _connections_per_worker(supervisor, port)
        assert sum(per_worker.values()) == 32, per_worker
        # By address hash: all 32 on one worker has a chance of 2 in 2**32.
        assert len(per_worker) == 2 and min(per_worker.values()) > 0, per_worker
    finally:
        for conn in connections:
            conn.close()


def test_a_dead_worker_leaves_no_connection_unanswered(
    two_workers: tuple[psutil.Process, int],
) -> None:
    supervisor, port = two_workers
    victim, survivor = (w.pid for w in _workers(supervisor))
    os.kill(victim, signal.SIGKILL)
    psutil.Process(victim).wait(timeout=10)
    # None waits in the dead worker's queue: its socket closed with it (the supervisor
    # kept no copy), and the replacement's joins only once it listens, ready. Were a
    # copy of the dead socket still open, about half of these would never be answered
    # (the timeout is generous for a busy machine, not for a slow start).
    for _ in range(16):
        _get_health(port, timeout_s=30).close()
    replaced = _wait_for_workers(supervisor, port, 2)
    assert victim not in replaced and survivor in replaced
    spread = _burst(port, 32)
    try:
        per_worker = _connections_per_worker(supervisor, port)
        assert len(per_worker) == 2 and min(per_worker.values()) > 0, per_worker
    finally:
        for conn in spread:
            conn.close()


def _batch_concurrency(port: int) -> int:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    with conn:
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: payflow\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    [line] = [
        line
        for line in answer.decode().splitlines()
        if line.startswith("payflow_ledger_batch_concurrency ")
    ]
    return int(line.split()[1])


@pytest.mark.parametrize(("workers", "configured", "each"), [(2, 5, 2), (2, 1, 1), (1, 5, 5)])
def test_workers_share_the_servers_ledger_batches(
    pg_url: str, workers: int, configured: int, each: int
) -> None:
    env = {"PAYFLOW_API_BATCH_CONCURRENCY": str(configured)}
    with _serving(pg_url, workers, **env) as (_, port):
        # New connections reach every worker (by address): ask often enough for both.
        seen = {_batch_concurrency(port) for _ in range(24)}
    assert seen == {each}


def test_a_port_in_use_stops_the_supervisor_at_once(pg_url: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "payflow.cli", "api", "--port", str(port), "--workers", "2"],
            env=_env(pg_url),
            capture_output=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert result.returncode != 0
    assert b"Address already in use" in result.stderr, result.stderr[-2000:]


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A migrated PostgreSQL database nothing has started on yet."""
    with migrated_pg_database("payflow_fresh") as url:
        yield url


async def test_processes_starting_together_make_one_signing_key(fresh_pg_url: str) -> None:
    engines = [create_engine(fresh_pg_url) for _ in range(4)]
    try:
        await asyncio.gather(*(ensure_signing_key(engine) for engine in engines))
        async with engines[0].connect() as conn:
            kids = (await conn.execute(select(signing_keys.c.kid))).scalars().all()
        assert len(kids) == 1, kids
    finally:
        for engine in engines:
            await engine.dispose()
