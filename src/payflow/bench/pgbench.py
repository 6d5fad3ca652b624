"""PostgreSQL's own transfer benchmark (pgbench tpcb-like), the baseline for the ledger."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from sqlalchemy.engine import make_url

_TPS_RE = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PgbenchResult:
    tps: float
    clients: int
    scale: int
    seconds: int
    latency_ms_avg: float | None


def _connection_args(database_url: str) -> list[str]:
    url = make_url(database_url)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    if url.username:
        args += ["-U", url.username]
    return args


def _pgbench() -> str:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise RuntimeError("pgbench is not installed (Debian: postgresql-contrib / postgresql)")
    return pgbench


def init_pgbench(database_url: str, *, scale: int) -> None:
    """Create pgbench's tables at `scale` in `database_url`'s database."""
    database = make_url(database_url).database or "postgres"
    subprocess.run(
        [_pgbench(), *_connection_args(database_url), "-i", "-s", str(scale), "-q", database],
        check=True,
        capture_output=True,
        text=True,
    )


def run_tpcb_like(
    database_url: str, *, scale: int, clients: int, seconds: int, threads: int
) -> PgbenchResult:
    """tpcb-like for `seconds` on tables `init_pgbench` made (at `scale`)."""
    database = make_url(database_url).database or "postgres"
    done = subprocess.run(
        [
            _pgbench(),
            *_connection_args(database_url),
            "-b",
            "tpcb-like",
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            database,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    match = _TPS_RE.search(done.stdout)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    latency = re.search(r"latency average = ([0-9.]+) ms", done.stdout)
    return PgbenchResult(
        tps=float(match.group(1)),
        clients=clients,
        scale=scale,
        seconds=seconds,
        latency_ms_avg=float(latency.group(1)) if latency else None,
    )


def run_pgbench(
    database_url: str, *, scale: int, clients: int, seconds: int, threads: int
) -> PgbenchResult:
    """Initialise pgbench's tables at `scale` in `database_url`'s database and run tpcb-like."""
    init_pgbench(database_url, scale=scale)
    return run_tpcb_like(
        database_url, scale=scale, clients=clients, seconds=seconds, threads=threads
    )
