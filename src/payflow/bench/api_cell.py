"""One cell of `payflow bench api`: a fresh database and `payflow api`, users, load.

A cell is a database (PostgreSQL, or SQLite for the embedded figure), a number of
`payflow api` processes and a distribution ("uniform": each client pays a random other
bench user; "hot": every transfer pays one recipient). Each cell gets its own database and
server, so no cell inherits another's rows, caches or bloat.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from payflow.bench.api_sampler import Sample, ServerSampler
from payflow.bench.api_server import ApiServer, api_server
from payflow.bench.api_users import (
    FUNDING,
    TRANSFER_AMOUNT,
    BenchUser,
    create_users,
    register_recipients,
)
from payflow.bench.cli import _admin
from payflow.bench.http_load import LoadPlan, LoadResult, build_client, run_load

WARMUP_S = 1.0
# Spawning the generator's process and opening its connections, before the warm-up.
LOADGEN_START_S = 1.5
# More errors than this and the cell has failed: its rate means nothing.
ERROR_FRACTION_MAX = 0.01


@dataclass(frozen=True, slots=True)
class ApiCell:
    database: str
    server_processes: int
    distribution: str


def cells_for(server_processes: list[int], *, hot: bool, embedded: bool) -> list[ApiCell]:
    """PostgreSQL cells per process count (uniform, then hot), then the embedded one."""
    distributions = ["uniform", "hot"] if hot else ["uniform"]
    cells = [ApiCell("postgresql", n, d) for n in server_processes for d in distributions]
    return cells + ([ApiCell("sqlite", 1, "uniform")] if embedded else [])


def _transfer_plan(
    api: ApiServer,
    users: list[BenchUser],
    recipient: BenchUser,
    others: list[str],
    cell: ApiCell,
    *,
    seconds: float,
    seed: int,
) -> LoadPlan:
    """Each client pays the recipient (hot) or, at random, any other bench user or one of
    the receive-only users `others` (uniform)."""
    everyone = [u.handle for u in [*users, recipient]] + others
    run_tag = uuid.uuid4().hex[:12]
    clients = []
    for i, user in enumerate(users):
        targets = (
            [recipient.handle]
            if cell.distribution == "hot"
            else [h for h in everyone if h != user.handle]
        )
        bodies = [
            json.dumps({"to": t, "amount": TRANSFER_AMOUNT, "currency": "INR"}).encode()
            for t in targets
        ]
        headers = {
            "Authorization": f"Bearer {user.access_token}",
            "Content-Type": "application/json",
        }
        clients.append(
            build_client(
                "POST",
                "/v1/transfers",
                host=api.host,
                port=api.port,
                headers=headers,
                bodies=bodies,
                key_prefix=f"bench-{run_tag}-{i}-",
            )
        )
    return LoadPlan(
        host=api.host,
        port=api.port,
        clients=tuple(clients),
        start_at=time.time() + LOADGEN_START_S + WARMUP_S,
        seconds=seconds,
        expected_status=201,
        seed=seed,
    )


def _measure(
    cell: ApiCell,
    database_url: str,
    *,
    workdir: Path,
    clients: int,
    recipients: int,
    seconds: float,
    seed: int,
) -> tuple[LoadResult, Sample, str]:
    """Start the API on `database_url`, make the users, run the load, stop the API.

    Returns the server's log tail too when the cell failed, since its log is temporary.
    """
    tag = uuid.uuid4().hex[:6]
    log_path = workdir / f"api-{cell.database}-{cell.server_processes}-{cell.distribution}.log"
    with api_server(database_url, processes=cell.server_processes, log_path=log_path) as api:
        handles = [f"bench_{i:04d}_{tag}" for i in range(clients)]
        users = asyncio.run(create_users(api.base_url, handles, funding=FUNDING))
        [recipient] = asyncio.run(create_users(api.base_url, [f"bench_shop_{tag}"], funding=0))
        others = [
            f"bench_r{i:05d}_{tag}"
            for i in range(recipients if cell.distribution == "uniform" else 0)
        ]
        asyncio.run(register_recipients(api.base_url, others))
        plan = _transfer_plan(api, users, recipient, others, cell, seconds=seconds, seed=seed)
        window = (plan.start_at, plan.start_at + seconds)
        with ServerSampler(api.process.pid, window=window) as sampler:
            load = run_load(plan)
        log_tail = api.log_tail() if _failed(load) else ""
    return load, sampler.sample, log_tail


def _failed(load: LoadResult) -> bool:
    return load.error_fraction > ERROR_FRACTION_MAX


def run_cell(
    cell: ApiCell,
    *,
    server: str,
    name: str,
    workdir: Path,
    clients: int,
    recipients: int,
    seconds: float,
    seed: int,
) -> tuple[LoadResult, Sample, str]:
    """Measure `cell` on a database of its own, `name`, made and dropped here."""

    def measure(url: str) -> tuple[LoadResult, Sample, str]:
        return _measure(
            cell,
            url,
            workdir=workdir,
            clients=clients,
            recipients=recipients,
            seconds=seconds,
            seed=seed,
        )

    if cell.database == "sqlite":
        return measure(f"sqlite:///{workdir / name}.db")
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        return measure(make_url(server).set(database=name).render_as_string(hide_password=False))
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def cell_report(
    cell: ApiCell, load: LoadResult, sample: Sample, log_tail: str, pgbench_tps: float
) -> dict[str, Any]:
    """The cell's row of the JSON report."""
    errors = {str(s): n for s, n in sorted(load.statuses.items()) if s != 201}
    accounted = sample.server_cpu_share + sample.postgres_cpu_share + load.cpu_share
    return {
        "database": cell.database,
        "server_processes": cell.server_processes,
        "distribution": cell.distribution,
        "transfers_per_s": round(load.rate_per_s, 1),
        # The mean of the pgbench runs just before and just after the cell.
        "pgbench_tps": round(pgbench_tps, 1),
        "ratio_to_pgbench": round(load.rate_per_s / pgbench_tps, 2) if pgbench_tps else 0.0,
        "p50_ms": round(load.percentile_ms(0.50), 2),
        "p99_ms": round(load.percentile_ms(0.99), 2),
        "transfers": load.completed,
        "seconds": round(load.seconds, 3),
        "requests": load.requests,
        "errors": load.errors,
        "error_statuses": errors,
        "error_samples": load.error_samples,
        "failed": _failed(load),
        "server_log_tail": log_tail,
        "loadgen_cpu_us_per_request": round(load.cpu_us_per_request, 1),
        "loadgen_cpu_share": round(load.cpu_share, 3),
        "server_cpu_share": round(sample.server_cpu_share, 3),
        "postgres_cpu_share": round(sample.postgres_cpu_share, 3),
        "machine_cpu_busy": round(sample.machine_cpu_busy, 3),
        # Neither the API, PostgreSQL nor the generator: other jobs on the machine.
        "other_cpu_share": round(max(0.0, sample.machine_cpu_busy - accounted), 3),
        "peak_rss_mib": [
            {"pid": p.pid, "role": p.role, "peak_rss_mib": round(p.peak_rss_mib, 1)}
            for p in sorted(sample.peaks.values(), key=lambda p: (p.role != "main", p.pid))
        ],
    }
