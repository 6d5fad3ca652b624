"""`payflow bench events` end to end through the CLI, briefly, on the real services: the
JSON it prints, the databases it drops and the broker objects it removes; and the
options it refuses, before it creates anything.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aio_pika
import aio_pika.exceptions
import nats
import nats.js.errors
import psycopg
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from payflow.cli import app
from payflow.events.registry import all_consumers
from tests.services import (
    NATS_URL,
    PG_ADMIN_URL,
    RABBITMQ_URL,
    REDIS_URL,
    ensure_nats,
    ensure_postgresql,
    ensure_rabbitmq,
    ensure_redis,
    free_port,
)

TINY = ["--events", "300", "--seconds", "1", "--rate", "200", "--accounts", "100"]


def _bench(*options: str) -> Any:
    return CliRunner().invoke(app, ["bench", "events", *TINY, *options])


def _leftover_databases() -> list[str]:
    """Bench databases of this process (the CLI runs in it) still on the server."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute("SELECT datname FROM pg_database").fetchall()
    return [r[0] for r in rows if r[0].startswith(f"payflow_bench_events_{os.getpid()}_")]


async def _namespace_objects(kind: str, namespace: str) -> list[str]:
    """What the adapters declared for `namespace` that is still on the broker."""
    found = []
    if kind == "rabbitmq":
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
        async with connection:
            queues = [f"{namespace}.{c}" for c in ["bench", *all_consumers()]]
            for declare, name in [
                ("declare_exchange", f"{namespace}.events"),
                *(("declare_queue", queue) for queue in queues),
            ]:
                # A passive declaration of something missing closes its channel.
                channel = await connection.channel()
                try:
                    await getattr(channel, declare)(name, passive=True)
                    found.append(name)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    pass
    elif kind == "nats":
        nc = await nats.connect(NATS_URL, connect_timeout=5, allow_reconnect=False)
        try:
            await nc.jetstream().stream_info(f"{namespace.upper()}_EVENTS")
            found.append(f"{namespace.upper()}_EVENTS")
        except nats.js.errors.NotFoundError:
            pass
        await nc.close()
    elif kind == "redis":
        client = Redis.from_url(REDIS_URL)
        if await client.exists(f"{namespace}:events"):
            found.append(f"{namespace}:events")
        await client.aclose()
    return found


def _check_report(report: dict[str, Any], deliveries: list[str]) -> None:
    assert report["machine"]["cpus"] == os.cpu_count()
    assert report["settings"]["poll_interval_ms"] == 50
    assert 300 < report["settings"]["event_data_bytes"] < 1000
    assert [r["delivery"] for r in report["deliveries"]] == deliveries
    for r in report["deliveries"]:
        assert r["events"] == 300
        assert r["events_per_s"] > 0, r
        # 200 events/s for 1 s, every one of them processed and timed.
        assert r["latency_events"] == 200, r
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], r
        if r["delivery"] == "local":
            assert r["relay_p50_ms"] is None
        else:
            assert 0 < r["relay_p50_ms"] <= r["relay_p99_ms"], r
        assert set(r["cpu_throughput"]) == {"bench", "postgresql", "broker", "other"}
        assert r["cpu_throughput"]["bench"] > 0
    assert [c["clients"] for c in report["outbox_cost"]] == [1, 2]
    for c in report["outbox_cost"]:
        assert c["without_outbox_transfers_per_s"] > 0, c
        assert c["with_outbox_transfers_per_s"] > 0, c
        assert c["without_outbox_failed"] == c["with_outbox_failed"] == 0
        assert c["ratio"] == pytest.approx(
            c["with_outbox_transfers_per_s"] / c["without_outbox_transfers_per_s"], abs=0.001
        )
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        names = {r[0] for r in admin.execute("SELECT datname FROM pg_database").fetchall()}
    assert len(report["databases"]) == len(deliveries) + 1
    assert names.isdisjoint(report["databases"])
    assert _leftover_databases() == []


@pytest.mark.parametrize("deliveries", [["local", "redis"], ["rabbitmq", "nats"]])
def test_a_short_run_reports_sane_figures_and_leaves_nothing_behind(
    deliveries: list[str],
) -> None:
    ensure_postgresql()
    ensure_redis()
    ensure_rabbitmq()
    ensure_nats()
    result = _bench("--brokers", ",".join(deliveries), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    _check_report(report, deliveries)
    # With --json the table goes to stderr, so that stdout is one JSON document.
    text = " ".join(result.stderr.split())  # rich wraps lines at the console's width
    assert f"PayFlow event backbone on PostgreSQL ({os.cpu_count()} CPUs)" in text
    assert "Outbox cost on ledger batches of 100 transfers" in text
    assert f"broker namespace {report['broker_namespace']} (removed)" in text
    for kind in deliveries:
        assert asyncio.run(_namespace_objects(kind, report["broker_namespace"])) == [], kind


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--events", "0"], "Invalid value for '--events'"),
        (["--rate", "0"], "Invalid value for '--rate'"),
        (["--brokers", "kafka"], "--brokers: kafka is not a delivery"),
        (["--brokers", "local,kafka"], "choose from local,rabbitmq,nats,redis"),
        (["--brokers", ","], "--brokers: none given"),
    ],
)
def test_bad_options_are_refused_with_a_clear_error(options: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "events", *options])
    assert result.exit_code != 0
    assert message in result.output
    assert _leftover_databases() == []


def test_an_unreachable_broker_is_named_before_anything_is_created() -> None:
    ensure_postgresql()
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = _bench("--brokers", "local,redis", "--redis-url", url)
    assert result.exit_code == 1
    assert f"redis is unreachable at {url}" in result.output
    assert "--brokers local,rabbitmq,nats" in result.output
    assert _leftover_databases() == []


def test_an_unreachable_broker_url_hides_its_password() -> None:
    url = f"amqp://guest:secret@127.0.0.1:{free_port()}/"
    result = _bench("--brokers", "rabbitmq", "--rabbitmq-url", url)
    assert result.exit_code == 1
    assert "rabbitmq is unreachable at amqp://guest:***@127.0.0.1:" in result.output
    assert "secret" not in result.output
