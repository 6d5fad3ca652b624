"""Where the CPU went during a phase of `payflow bench events`: the bench process (relay,
consumer, producer and poller, all on its one event loop), PostgreSQL, the broker (the
process listening on its port), and everything else on the machine (other jobs: a
figure above ~0.2 cores casts doubt on the others).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped]  # no stubs installed

from payflow.bench.api_sampler import _machine_busy_s, _postgres_cpu_s

DEFAULT_PORTS: Final = {"amqp": 5672, "nats": 4222, "redis": 6379}


def broker_pid(url: str | None) -> int | None:
    """The process listening on `url`'s port on this machine (None: none, or not ours
    to see, such as a broker on another host)."""
    if url is None:
        return None
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    try:
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                return int(connection.pid) if connection.pid else None
    except psutil.Error:
        return None
    return None


def _process_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass(frozen=True, slots=True)
class CpuMark:
    at: float
    bench_s: float
    postgres_s: float
    broker_s: float
    machine_s: float


def cpu_mark(broker: int | None) -> CpuMark:
    """CPU seconds used so far by this process, PostgreSQL, the process `broker` and the
    machine (blocking, tens of ms: call it in a thread from an event loop)."""
    times = psutil.Process().cpu_times()
    return CpuMark(
        at=time.monotonic(),
        bench_s=float(times.user + times.system),
        postgres_s=_postgres_cpu_s(),
        broker_s=_process_cpu_s(broker),
        machine_s=_machine_busy_s(),
    )


def cpu_shares(opened: CpuMark, closed: CpuMark) -> dict[str, Any]:
    """Cores busy on average between two marks: bench, postgresql, broker, other."""
    seconds = max(1e-3, closed.at - opened.at)
    bench = (closed.bench_s - opened.bench_s) / seconds
    postgres = (closed.postgres_s - opened.postgres_s) / seconds
    broker = (closed.broker_s - opened.broker_s) / seconds
    machine = (closed.machine_s - opened.machine_s) / seconds
    return {
        "bench": round(bench, 2),
        "postgresql": round(postgres, 2),
        "broker": round(broker, 2),
        "other": round(max(0.0, machine - bench - postgres - broker), 2),
    }
