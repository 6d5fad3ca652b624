"""Orchestration of `payflow bench api`: calibration, pgbench, the cells, the report.

The load generator is calibrated first (its ceiling against a do-nothing responder), then
pgbench tpcb-like runs on the same PostgreSQL server with as many clients, then each cell
(see `api_cell`) starts `payflow api` on a fresh database and measures transfers/s.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
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
from payflow.bench.pgbench import PgbenchResult, run_pgbench

CALIBRATION_S_MAX = 3.0


def _pgbench(server: str, name: str, *, scale: int, clients: int, seconds: float) -> PgbenchResult:
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        return run_pgbench(
            make_url(server).set(database=name).render_as_string(hide_password=False),
            scale=scale,
            clients=clients,
            seconds=max(1, round(seconds)),
            threads=min(clients, 2),
        )
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _report(
    *,
    baseline: PgbenchResult,
    calibration: LoadResult,
    results: list[dict[str, Any]],
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "pgbench_tps": round(baseline.tps, 1),
        "pgbench": {"scale": baseline.scale, "clients": clients, "seconds": baseline.seconds},
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
    ):
        task = progress.add_task("load generator calibration", total=len(cells) + 2)
        calibration = calibrate(clients=clients, seconds=min(seconds, CALIBRATION_S_MAX))
        progress.update(task, advance=1, description="pgbench tpcb-like")
        baseline = _pgbench(
            server,
            f"payflow_pgbench_{suffix}",
            scale=pgbench_scale,
            clients=clients,
            seconds=seconds,
        )
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
            results.append(cell_report(cell, load, sample, log_tail, baseline.tps))
            progress.update(task, advance=1)
    report = _report(
        baseline=baseline,
        calibration=calibration,
        results=results,
        clients=clients,
        seconds=seconds,
    )
    report["uniform_recipients"] = recipients
    print_report(console, report)
    return report
