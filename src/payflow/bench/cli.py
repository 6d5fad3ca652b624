"""Orchestration of `payflow bench ledger`: databases, baseline, cells, table, JSON."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url

from payflow.bench.ledger import DISTRIBUTIONS, Cell, create_bench_accounts, run_cell
from payflow.bench.pgbench import run_pgbench
from payflow.config import get_settings, normalize_database_url
from payflow.db import create_engine
from payflow.migrate import upgrade

SERVER_URL_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _server_url(server_url: str | None) -> str:
    url = normalize_database_url(server_url or get_settings().database_url)
    if not url.startswith("postgresql"):
        url = SERVER_URL_DEFAULT
    return url


async def _admin(server_url: str, statement: str) -> None:
    engine = create_engine(server_url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def run_ledger_bench(
    *,
    console: Console,
    server_url: str | None,
    batch_sizes: list[int],
    distributions: list[str],
    clients: int,
    processes: int,
    seconds: float,
    accounts: int,
    pgbench_scale: int,
) -> dict[str, Any]:
    """Run the ledger benchmark; prints progress and a table, returns the JSON report."""
    unknown = set(distributions) - set(DISTRIBUTIONS)
    if unknown:
        raise SystemExit(f"unknown distribution(s) {sorted(unknown)}; use {DISTRIBUTIONS}")
    server = _server_url(server_url)
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    ledger_db, pgbench_db = f"payflow_bench_{suffix}", f"payflow_pgbench_{suffix}"
    ledger_url = make_url(server).set(database=ledger_db).render_as_string(hide_password=False)
    pgbench_url = make_url(server).set(database=pgbench_db).render_as_string(hide_password=False)
    cells = [Cell(b, d) for b in batch_sizes for d in distributions]
    results = []
    asyncio.run(_admin(server, f'CREATE DATABASE "{ledger_db}"'))
    asyncio.run(_admin(server, f'CREATE DATABASE "{pgbench_db}"'))
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("pgbench tpcb-like", total=len(cells) + 2)
            baseline = run_pgbench(
                pgbench_url,
                scale=pgbench_scale,
                clients=clients,
                seconds=max(1, round(seconds)),
                threads=min(clients, 2),
            )
            asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{pgbench_db}"'))
            progress.update(task, advance=1, description="ledger accounts")
            upgrade(ledger_url)
            ids = asyncio.run(create_bench_accounts(ledger_url, accounts))
            progress.update(task, advance=1)
            for index, cell in enumerate(cells):
                progress.update(task, description=f"batch {cell.batch_size} {cell.distribution}")
                results.append(
                    run_cell(
                        ledger_url,
                        cell,
                        ids,
                        clients=clients,
                        processes=processes,
                        seconds=seconds,
                        seed=index + 1,
                    )
                )
                progress.update(task, advance=1)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{ledger_db}" WITH (FORCE)'))
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{pgbench_db}" WITH (FORCE)'))
    report = {
        "pgbench_tps": round(baseline.tps, 1),
        "pgbench": {"scale": pgbench_scale, "clients": clients, "seconds": baseline.seconds},
        "clients": clients,
        "processes": processes,
        "seconds": seconds,
        "accounts": accounts,
        "results": [
            {
                "batch_size": r.batch_size,
                "distribution": r.distribution,
                "transfers_per_s": round(r.transfers_per_s, 1),
                "ratio_to_pgbench": round(r.transfers_per_s / baseline.tps, 2),
                "p50_ms": round(r.percentile_ms(0.50), 2),
                "p99_ms": round(r.percentile_ms(0.99), 2),
                "peak_rss_mib": round(r.peak_rss_mib, 1),
                "failed": r.failed,
            }
            for r in results
        ],
    }
    _print(console, report)
    return report


def _print(console: Console, report: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"Ledger on PostgreSQL: {report['clients']} clients in {report['processes']}"
            f" processes, {report['accounts']:,} accounts; pgbench tpcb-like (scale"
            f" {report['pgbench']['scale']}, {report['clients']} clients):"
            f" {report['pgbench_tps']:,.0f} tps"
        ),
        title_justify="left",
    )
    for column in (
        "batch",
        "distribution",
        "transfers/s",
        "× pgbench",
        "p50 ms",
        "p99 ms",
        "peak RSS MiB",
    ):
        table.add_column(column, justify="left" if column == "distribution" else "right")
    for r in report["results"]:
        table.add_row(
            str(r["batch_size"]),
            r["distribution"],
            f"{r['transfers_per_s']:,.0f}",
            f"{r['ratio_to_pgbench']:.2f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['peak_rss_mib']:.0f}",
        )
    console.print(table)
