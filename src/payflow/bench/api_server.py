"""`payflow api` as a subprocess for the benchmark: start, wait for /health, stop.

The server runs in its own session (process group), so a Ctrl-C at the terminal reaches
the benchmark, which then stops the server in order (SIGTERM, then SIGKILL to the group if
it has not gone in time) instead of racing it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Setup registers a user per client: argon2 at its production cost would take most of the
# run, and the rate limits are per principal and route, far below a benchmark's rate.
BENCH_SERVER_ENV = {
    "PAYFLOW_PASSWORD_HASH_TIME_COST": "1",
    "PAYFLOW_PASSWORD_HASH_MEMORY_KIB": "1024",
    "PAYFLOW_PASSWORD_HASH_PARALLELISM": "1",
    "PAYFLOW_RATE_LIMIT_REQUESTS": "10000000",
    "PAYFLOW_RATE_LIMIT_AUTH_REQUESTS": "10000000",
}
LOG_TAIL_BYTES = 4000


@dataclass(frozen=True, slots=True)
class ApiServer:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self) -> str:
        with contextlib.suppress(OSError), self.log_path.open("rb") as log:
            log.seek(max(0, self.log_path.stat().st_size - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")
        return ""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (another process could still take it first)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def api_server(
    database_url: str,
    *,
    processes: int,
    log_path: Path,
    startup_timeout_s: float = 120.0,
    shutdown_timeout_s: float = 30.0,
) -> Iterator[ApiServer]:
    """`payflow api` on a free port with `processes` workers, healthy for the block."""
    host, port = "127.0.0.1", free_port()
    env = {**os.environ, **BENCH_SERVER_ENV, "PAYFLOW_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "payflow.cli", "api", "--host", host, "--port", str(port)]
    command += ["--workers", str(processes)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ApiServer(process, host, port, log_path)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _healthy(host, port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"payflow api exited ({process.returncode}):\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"payflow api not healthy in {startup_timeout_s} s:\n{server.log_tail()}"
                )
            time.sleep(0.1)
        yield server
    except Exception as error:
        # The log lives in a temporary directory: show what the server said before it goes.
        error.add_note(f"payflow api's log (tail):\n{server.log_tail()}")
        raise
    finally:
        _stop(process, shutdown_timeout_s)


def _stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout_s)
    # Workers that outlived their supervisor are still in its process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout_s)
