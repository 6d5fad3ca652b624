"""Orchestration of `payflow bench events`: the event backbone's throughput and latency
per delivery, and what the outbox costs the ledger, side by side from one run.

Each delivery (the embedded log, RabbitMQ, NATS JetStream, Redis Streams) runs on a fresh
PostgreSQL database, so none inherits another's rows, and every broker object lives in
a namespace of the run's own. Databases are dropped and broker objects removed before
this returns, on errors and Ctrl-C too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import Progress
from sqlalchemy.engine import make_url

from payflow.bench.cli import _admin, _server_url
from payflow.bench.events_brokers import (
    DELIVERIES,
    BrokerUnreachable,
    probe,
    remove_namespace,
    safe_url,
)
from payflow.bench.events_outbox import measure_outbox_cost
from payflow.bench.events_pipeline import (
    CONSUMER_NAME,
    PRODUCER_TICK_S,
    WRITE_TRANSACTION_EVENTS,
    EventMaker,
    bench_settings,
    measure_delivery,
)
from payflow.bench.events_report import print_report
from payflow.bench.ledger import create_bench_accounts
from payflow.config import Settings
from payflow.events.registry import all_consumers
from payflow.migrate import upgrade

log = logging.getLogger(__name__)

OUTBOX_CLIENTS = (1, 2)


@dataclass(frozen=True, slots=True)
class Options:
    """What a run measures: see `payflow bench events --help`."""

    events: int
    rate_per_s: float
    seconds: float
    poll_ms: float
    batch: int
    accounts: int


@contextlib.contextmanager
def scratch_database(server: str, name: str) -> Iterator[str]:
    """A new, migrated database `name` on the PostgreSQL `server`; dropped on the way out."""
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def parse_deliveries(text: str) -> list[str]:
    """`local,redis` → ["local", "redis"], in the order given; unknown names are an error."""
    chosen = list(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in chosen if name not in DELIVERIES]
    if unknown or not chosen:
        raise SystemExit(
            f"--brokers: {', '.join(unknown) or 'none given'} is not a delivery;"
            f" choose from {','.join(DELIVERIES)}"
        )
    return chosen


def _delivery(
    kind: str, *, server: str, name: str, url: str | None, namespace: str, options: Options
) -> dict[str, Any]:
    """One delivery on its own database; its namespace is removed from the broker after."""
    with scratch_database(server, name) as database_url:
        settings = bench_settings(
            database_url=database_url,
            broker_url=url,
            namespace=namespace,
            poll_ms=options.poll_ms,
        )
        try:
            result = asyncio.run(
                measure_delivery(
                    kind,
                    settings,
                    events=options.events,
                    rate_per_s=options.rate_per_s,
                    seconds=options.seconds,
                )
            )
        finally:
            if url is not None:
                _remove_namespace(kind, url, namespace)
    return {**result, "url": safe_url(url) if url else None, "database": name}


def _remove_namespace(kind: str, url: str, namespace: str) -> None:
    # PayFlow's registered consumers too: a relay declares their groups unless told
    # otherwise. A failure here must not hide the one that ended the measurement, if any.
    consumers = [CONSUMER_NAME, *all_consumers()]
    try:
        asyncio.run(remove_namespace(kind, url, namespace, consumers))
    except Exception as error:
        log.warning("could not remove namespace %s from %s: %s", namespace, kind, error)


def _outbox_cost(server: str, name: str, options: Options) -> list[dict[str, Any]]:
    with scratch_database(server, name) as database_url:
        accounts = asyncio.run(create_bench_accounts(database_url, options.accounts))
        return measure_outbox_cost(
            database_url,
            accounts,
            clients=OUTBOX_CLIENTS,
            batch=options.batch,
            seconds=options.seconds,
        )


def run_events_bench(
    *,
    console: Console,
    server_url: str | None,
    deliveries: list[str],
    urls: dict[str, str],
    events: int,
    rate: float,
    seconds: float,
    poll_ms: float,
    batch: int,
    accounts: int,
) -> dict[str, Any]:
    """Run the events benchmark; prints progress and a table, returns the JSON report.

    `urls` gives each broker's URL by delivery name. A broker that does not answer stops
    the run before anything is created, with a message naming it and its URL.
    """
    options = Options(events, rate, seconds, poll_ms, batch, accounts)
    server = _server_url(server_url)
    prefix = f"payflow_bench_events_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    namespace = f"bench_{uuid.uuid4().hex[:10]}"
    results = []
    try:
        for kind in deliveries:
            if kind != "local":
                asyncio.run(probe(kind, urls[kind]))
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("deliveries", total=len(deliveries) + 1)
            for kind in deliveries:
                progress.update(task, description=f"{kind}: {events:,} events, then latency")
                url = None if kind == "local" else urls[kind]
                name = f"{prefix}_{kind}"
                results.append(
                    _delivery(
                        kind,
                        server=server,
                        name=name,
                        url=url,
                        namespace=namespace,
                        options=options,
                    )
                )
                progress.update(task, advance=1)
            progress.update(task, description="outbox cost on ledger batches")
            outbox = _outbox_cost(server, f"{prefix}_outbox", options)
    except BrokerUnreachable as error:
        raise SystemExit(str(error)) from None
    settings = bench_settings(
        database_url=server, broker_url=None, namespace=namespace, poll_ms=poll_ms
    )
    report = _report(options, settings, results=results, outbox=outbox)
    report["databases"] = [*(r["database"] for r in results), f"{prefix}_outbox"]
    print_report(console, report)
    return report


def _report(
    options: Options,
    settings: Settings,
    *,
    results: list[dict[str, Any]],
    outbox: list[dict[str, Any]],
) -> dict[str, Any]:
    sample = EventMaker().make(1)[0]
    return {
        "machine": {"cpus": os.cpu_count()},
        "settings": {
            "events": options.events,
            "rate_per_s": options.rate_per_s,
            "seconds": options.seconds,
            "poll_interval_ms": settings.events_poll_interval_ms,
            "relay_batch_size_max": settings.relay_batch_size_max,
            "consumer_batch_size_max": settings.consumer_batch_size_max,
            "write_transaction_events": WRITE_TRANSACTION_EVENTS,
            "producer_tick_ms": PRODUCER_TICK_S * 1000,
            "batch": options.batch,
            "accounts": options.accounts,
            "event_data_bytes": len(sample.data_json().encode()),
        },
        "broker_namespace": settings.broker_namespace,
        "deliveries": results,
        "outbox_cost": outbox,
    }
