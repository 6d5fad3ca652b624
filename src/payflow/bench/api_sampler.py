"""Peak memory and CPU of the API's processes while the benchmark measures them.

A thread samples the RSS of the server and all its descendants (uvicorn's supervisor and
workers) every `interval_s`, and takes the CPU times of those processes, of PostgreSQL and
of the whole machine at the opening and closing of the measured window. What is left over
is other work on the machine: a benchmark run beside other jobs says so.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed; used only in this module

MIB = 1024 * 1024


@dataclass(slots=True)
class ProcessPeak:
    pid: int
    role: str
    peak_rss_mib: float


@dataclass(slots=True)
class Sample:
    """What the sampler saw; CPU figures are cores busy on average over the window."""

    peaks: dict[int, ProcessPeak] = field(default_factory=dict)
    server_cpu_share: float = 0.0
    postgres_cpu_share: float = 0.0
    machine_cpu_busy: float = 0.0


@dataclass(frozen=True, slots=True)
class _Mark:
    server_cpu_s: dict[int, float]
    postgres_cpu_s: float
    machine_busy_s: float
    at: float


def _role(process: Any, root_pid: int) -> str:
    if process.pid == root_pid:
        return "main"
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return "child"
    return "helper" if "resource_tracker" in cmdline else "worker"


def _tree(root: Any) -> list[Any]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_s(processes: list[Any]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = float(times.user + times.system)
    return seconds


def _postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process, living or exited (backends come and go)."""
    found = list(psutil.process_iter(["name", "ppid", "cpu_times"]))
    names = {p.pid: p.info["name"] for p in found}
    total = 0.0
    for process in found:
        times = process.info["cpu_times"]
        if process.info["name"] != "postgres" or times is None:
            continue
        total += float(times.user + times.system)
        if names.get(process.info["ppid"]) != "postgres":
            # The postmaster: exited backends' CPU is added to it when it reaps them.
            total += float(times.children_user + times.children_system)
    return total


def _mark(processes: list[Any]) -> _Mark:
    return _Mark(_cpu_s(processes), _postgres_cpu_s(), _machine_busy_s(), time.time())


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    idle = float(times.idle + getattr(times, "iowait", 0.0))
    return float(sum(times)) - idle


class ServerSampler:
    """Use as a context manager around the load; read `sample` afterwards."""

    def __init__(self, root_pid: int, *, window: tuple[float, float], interval_s: float = 0.1):
        self._root = psutil.Process(root_pid)
        self._root_pid = root_pid
        self._window = window
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-sampler", daemon=True)
        self.sample = Sample()

    def __enter__(self) -> ServerSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        start_at, stop_at = self._window
        opened: _Mark | None = None
        closed = False
        while not self._stop.is_set():
            processes = _tree(self._root)
            self._record_rss(processes)
            now = time.time()
            if opened is None and now >= start_at:
                opened = _mark(processes)
            elif opened is not None and not closed and now >= stop_at:
                self._record_cpu(opened, _mark(processes))
                closed = True
            # Wake at the window's marks, not up to an interval after them.
            mark = start_at if opened is None else stop_at if not closed else float("inf")
            self._stop.wait(max(0.001, min(self._interval_s, mark - now)))

    def _record_rss(self, processes: list[Any]) -> None:
        for process in processes:
            try:
                rss_mib = process.memory_info().rss / MIB
            except psutil.Error:
                continue
            if rss_mib <= 0:
                continue  # a zombie: exited, not yet reaped
            peak = self.sample.peaks.get(process.pid)
            if peak is None:
                role = _role(process, self._root_pid)
                self.sample.peaks[process.pid] = ProcessPeak(process.pid, role, rss_mib)
            else:
                peak.peak_rss_mib = max(peak.peak_rss_mib, rss_mib)

    def _record_cpu(self, opened: _Mark, closed: _Mark) -> None:
        seconds = max(1e-3, closed.at - opened.at)
        # A process born inside the window (a restarted worker) counts from zero.
        server_s = sum(
            cpu_s - opened.server_cpu_s.get(pid, 0.0) for pid, cpu_s in closed.server_cpu_s.items()
        )
        self.sample.server_cpu_share = server_s / seconds
        self.sample.postgres_cpu_share = (closed.postgres_cpu_s - opened.postgres_cpu_s) / seconds
        self.sample.machine_cpu_busy = (closed.machine_busy_s - opened.machine_busy_s) / seconds
