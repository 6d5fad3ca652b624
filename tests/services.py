"""Local services the tests need: found running, or started, never skipped."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


def is_listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_postgresql(timeout_s: float = 60) -> None:
    """Start the machine's PostgreSQL cluster if it is down; fail loudly if it will not come up."""
    if is_listening(PG_HOST, PG_PORT):
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions and shutil.which("pg_ctlcluster"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(PG_HOST, PG_PORT):
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"PostgreSQL is not listening on {PG_HOST}:{PG_PORT} and could not be started"
        f" (clusters: {glob.glob('/etc/postgresql/*')})"
    )


REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


def ensure_redis(timeout_s: float = 30) -> None:
    """Start the machine's Redis if it is down; fail loudly if it will not come up."""
    if is_listening(REDIS_HOST, REDIS_PORT):
        return
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=False,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_listening(REDIS_HOST, REDIS_PORT):
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"Redis is not listening on {REDIS_HOST}:{REDIS_PORT} and could not be started"
    )
