"""Orchestration of `payflow bench api`: calibration, pgbench, the cells, the report.

The load generator is calibrated first (its ceiling against a do-nothing responder), then
pgbench tpcb-like runs on the same PostgreSQL server with as many clients, before the
first cell and again after every cell; each cell (see `api_cell`) starts `payflow api`
on a fresh database, measures transfers/s, and is compared with the mean of the pgbench
runs just before and just after it, so a machine whose speed drifts during the run
(shared cores do) moves both sides of a ratio alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from sqlalchemy.engine import make_url

from payflow.bench.api_cell import WARMUP_S, cell_report, cells_for, run_cell
from payflow.bench.api_report import loadgen_evidence, print_report, verdicts
from payflow.bench.api_responder import calibrate
from payflow.bench.api_server import BENCH_SERVER_ENV
from payflow.bench.cli import _admin, _server_url
from payflow.bench.http_load import LoadResult
from payflow.bench.pgbench import PgbenchResult, init_pgbench, run_tpcb_like

CALIBRATION_S_MAX = 3.0


@contextlib.contextmanager
def _pgbench_database(server: str, name: str, *, scale: int) -> Iterator[str]:
    """A database of pgbench's tables at `scale` for the whole run, dropped after it."""
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        init_pgbench(url, scale=scale)
        yield url
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _tpcb_like(url: str, *, scale: int, clients: int, seconds: float) -> PgbenchResult:
    return run_tpcb_like(
        url,
        scale=scale,
        clients=clients,
        seconds=max(1, round(seconds)),
        threads=min(clients, 2),
    )


def _report(
    *,
    baselines: list[PgbenchResult],
    calibration: LoadResult,
    results: list[dict[str, Any]],
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    first = baselines[0]
    report: dict[str, Any] = {
        "pgbench_tps": round(statistics.fmean(b.tps for b in baselines), 1),
        "pgbench_runs_tps": [round(b.tps, 1) for b in baselines],
        "pgbench": {"scale": first.scale, "clients": clients, "seconds": first.seconds},
        "clients": clients,
        "seconds": seconds,
        "warmup_s": WARMUP_S,
        "machine": {"cpus": os.cpu_count()},
        "server_env": dict(BENCH_SERVER_ENV),
        "calibration": {
            "requests_per_s": round(calibration.rate_per_s, 1),
            "loadgen_cpu_us_per_request": round(calibration.cpu_us_per_request, 1),
            "loadgen_cpu_share": round(calibration.cpu_share, 3),
            "errors": calibration.errors,
        },
        "results": results,
        "verdicts": verdicts(results),
    }
    report["loadgen"] = loadgen_evidence(report)
    return report


def run_api_bench(
    *,
    console: Console,
    server_url: str | None,
    clients: int,
    server_processes: list[int],
    seconds: float,
    pgbench_scale: int,
    hot: bool,
    embedded: bool,
    recipients: int = 1000,
) -> dict[str, Any]:
    """Run the API benchmark; prints progress and a table, returns the JSON report.

    Every database it makes is dropped before it returns, on errors and Ctrl-C too.
    """
    if not server_processes or min(server_processes) < 1:
        raise SystemExit("--server-processes: one or more counts, each at least 1")
    server = _server_url(server_url)
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    cells = cells_for(server_processes, hot=hot, embedded=embedded)
    results = []
    with (
        Progress(console=console, transient=True) as progress,
        tempfile.TemporaryDirectory(prefix="payflow-bench-api-") as workdir,
        contextlib.ExitStack() as stack,
    ):
        task = progress.add_task("load generator calibration", total=2 * len(cells) + 2)
        calibration = calibrate(clients=clients, seconds=min(seconds, CALIBRATION_S_MAX))
        progress.update(task, advance=1, description="pgbench tpcb-like")
        pgbench_db = stack.enter_context(
            _pgbench_database(server, f"payflow_pgbench_{suffix}", scale=pgbench_scale)
        )
        baselines = [_tpcb_like(pgbench_db, scale=pgbench_scale, clients=clients, seconds=seconds)]
        progress.update(task, advance=1)
        for index, cell in enumerate(cells):
            label = f"{cell.database} {cell.server_processes}p {cell.distribution}"
            progress.update(task, description=label)
            load, sample, log_tail = run_cell(
                cell,
                server=server,
                name=f"payflow_bench_api_{suffix}_{index}",
                workdir=Path(workdir),
                clients=clients,
                recipients=recipients,
                seconds=seconds,
                seed=index + 1,
            )
            progress.update(task, advance=1, description=f"pgbench tpcb-like after {label}")
            baselines.append(
                _tpcb_like(pgbench_db, scale=pgbench_scale, clients=clients, seconds=seconds)
            )
            around = statistics.fmean((baselines[-2].tps, baselines[-1].tps))
            results.append(cell_report(cell, load, sample, log_tail, around))
            progress.update(task, advance=1)
    report = _report(
        baselines=baselines,
        calibration=calibration,
        results=results,
        clients=clients,
        seconds=seconds,
    )
    report["uniform_recipients"] = recipients
    print_report(console, report)
    return report
