"""`payflow`: the command line that carries every PayFlow command."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from payflow import __version__
from payflow.config import get_settings

app = typer.Typer(
    help="PayFlow: wallets, payments and payouts on a double-entry ledger.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(
    help="Benchmarks, each printed next to a baseline from the same run.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
dead_letters_app = typer.Typer(
    help="Events consumers gave up on: list them, replay them.", no_args_is_help=True
)
app.add_typer(dead_letters_app, name="dead-letters")
console = Console()


@app.command()
def version() -> None:
    """Print PayFlow's version."""
    console.print(__version__)


@app.command()
def migrate(
    database_url: Annotated[str | None, typer.Option(help="Default: PAYFLOW_DATABASE_URL")] = None,
) -> None:
    """Bring the database schema up to date (safe to run any number of times)."""
    from payflow.migrate import upgrade

    url = database_url or get_settings().database_url
    upgrade(url)
    console.print(f"[green]migrated[/green] {_safe(url)}")


@app.command()
def audit(
    database_url: Annotated[str | None, typer.Option(help="Default: PAYFLOW_DATABASE_URL")] = None,
) -> None:
    """Check the ledger's invariants; exits 1 on any violation."""
    from payflow.ledger.commands import run_audit

    ok = asyncio.run(run_audit(console, database_url or get_settings().database_url))
    raise typer.Exit(0 if ok else 1)


@app.command("expire-pending")
def expire_pending(
    database_url: Annotated[str | None, typer.Option(help="Default: PAYFLOW_DATABASE_URL")] = None,
) -> None:
    """Void every pending transfer whose timeout has passed (the sweeper, run once)."""
    from payflow.ledger.commands import run_expire

    count = asyncio.run(run_expire(database_url or get_settings().database_url))
    console.print(f"expired {count} pending transfer(s)")


@app.command()
def demo(
    database_url: Annotated[str | None, typer.Option(help="Default: PAYFLOW_DATABASE_URL")] = None,
) -> None:
    """Create the ledger, load demo wallets and transfers, print balances and the audit."""
    from payflow.ledger.commands import run_demo

    ok = asyncio.run(run_demo(console, database_url or get_settings().database_url))
    raise typer.Exit(0 if ok else 1)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Default: PAYFLOW_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: PAYFLOW_API_PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
) -> None:
    """Serve the HTTP API (after migrating the database) with `workers` processes."""
    from payflow.api.server import run_api

    settings = get_settings()
    run_api(
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        access_log=access_log,
    )


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Load demo users and money moves")] = False,
    host: Annotated[str | None, typer.Option(help="Default: PAYFLOW_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: PAYFLOW_API_PORT")] = None,
    bank_sim: Annotated[
        bool, typer.Option(help="Run the bank simulator in-process at PAYFLOW_BANK_URL")
    ] = True,
) -> None:
    """Run PayFlow in one process: API, event consumers, payouts, bank simulator (SQLite
    by default)."""
    from payflow.api.server import run_up

    settings = get_settings()
    run_up(
        console,
        host=host or settings.api_host,
        port=port or settings.api_port,
        demo=demo,
        bank_sim=bank_sim,
    )


@app.command()
def worker(
    consumer: Annotated[
        list[str] | None, typer.Option(help="Run only this consumer (repeatable); default all")
    ] = None,
    relay: Annotated[bool, typer.Option(help="Also relay the outbox to the broker")] = False,
) -> None:
    """Run event consumers (notifications, rewards, ...) until SIGTERM/SIGINT."""
    from payflow.events.registry import select_consumers
    from payflow.events.runtime import serve
    from payflow.migrate import upgrade

    settings = get_settings()
    try:
        consumers = select_consumers(consumer)
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    upgrade(settings.database_url)
    serve(settings, consumers=consumers, relay=relay)


@app.command("relay")
def relay_command() -> None:
    """Publish the outbox to PAYFLOW_BROKER_URL until SIGTERM/SIGINT (any number may run)."""
    from payflow.events.brokers import broker_kind
    from payflow.events.runtime import serve
    from payflow.migrate import upgrade

    settings = get_settings()
    if broker_kind(settings.broker_url) == "local":
        console.print("[red]no PAYFLOW_BROKER_URL: events are delivered in-process[/red]")
        raise typer.Exit(2)
    upgrade(settings.database_url)
    serve(settings, consumers={}, relay=True)


@app.command("events-backlog")
def events_backlog() -> None:
    """How many events wait to be published, and how old the oldest is."""
    from payflow.events.commands import run_backlog

    asyncio.run(run_backlog(console))


@dead_letters_app.command("list")
def dead_letters_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's")] = None,
    status: Annotated[str | None, typer.Option(help="parked, replaying or replayed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Dead letters, newest first."""
    from payflow.events.commands import run_list_dead_letters

    asyncio.run(run_list_dead_letters(console, consumer=consumer, status=status, limit=limit))


@dead_letters_app.command("replay")
def dead_letters_replay(
    letter_id: Annotated[str | None, typer.Argument(help="dlq_… id; omit with --all")] = None,
    all_parked: Annotated[bool, typer.Option("--all", help="Every parked letter")] = False,
    consumer: Annotated[str | None, typer.Option(help="With --all: one consumer's")] = None,
) -> None:
    """Hand parked events to their consumers again (a running worker applies them)."""
    from payflow.events.commands import run_replay

    if letter_id is None and not all_parked:
        console.print("[red]name a dead letter, or pass --all[/red]")
        raise typer.Exit(2)
    ok = asyncio.run(run_replay(console, letter_id=letter_id, consumer=consumer))
    raise typer.Exit(0 if ok else 1)


@app.command("create-operator")
def create_operator(
    email: Annotated[str, typer.Option(prompt=True)],
    name: Annotated[str, typer.Option(prompt=True)],
    handle: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Create an operator account (operators cannot register through the API)."""
    from payflow.identity.commands import run_create_operator

    ok = asyncio.run(
        run_create_operator(console, email=email, name=name, handle=handle, password=password)
    )
    raise typer.Exit(0 if ok else 1)


@app.command("rotate-signing-key")
def rotate_signing_key() -> None:
    """Start signing access tokens with a new key; tokens signed by older keys stay valid
    until they expire."""
    from payflow.identity.commands import run_rotate_signing_key

    kid = asyncio.run(run_rotate_signing_key())
    console.print(f"new signing key {kid}; API processes pick it up within a minute")


@bench_app.command("ledger")
def bench_ledger(
    database_url: Annotated[
        str | None,
        typer.Option(help="A PostgreSQL server (the bench makes and drops its own databases)."),
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated.")] = "1,10,100,1000",
    distributions: Annotated[str, typer.Option(help="uniform, hot, hot-credit")] = (
        "uniform,hot,hot-credit"
    ),
    clients: Annotated[int, typer.Option(min=1, max=64)] = 2,
    processes: Annotated[int, typer.Option(min=1, max=16, help="OS processes for clients")] = 2,
    seconds: Annotated[float, typer.Option(min=0.5, max=600)] = 5.0,
    accounts: Annotated[int, typer.Option(min=10_000, max=10_000_000)] = 10_000,
    pgbench_scale: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Transfers/s through create_transfers on PostgreSQL, next to pgbench tpcb-like."""
    from payflow.bench.cli import run_ledger_bench

    report = run_ledger_bench(
        console=Console(stderr=True) if as_json else console,
        server_url=database_url,
        batch_sizes=[int(x) for x in batch_sizes.split(",") if x],
        distributions=[d for d in distributions.split(",") if d],
        clients=clients,
        processes=processes,
        seconds=seconds,
        accounts=accounts,
        pgbench_scale=pgbench_scale,
    )
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")


@bench_app.command("api")
def bench_api(
    database_url: Annotated[
        str | None,
        typer.Option(help="A PostgreSQL server (the bench makes and drops its own databases)."),
    ] = None,
    clients: Annotated[int, typer.Option(min=1, max=1024, help="Concurrent users")] = 32,
    server_processes: Annotated[str, typer.Option(help="Comma-separated API process counts")] = (
        "1,2"
    ),
    seconds: Annotated[float, typer.Option(min=0.5, max=600)] = 10.0,
    pgbench_scale: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    hot: Annotated[bool, typer.Option(help="Also run the one-recipient variant")] = True,
    embedded: Annotated[bool, typer.Option(help="Also run the embedded (SQLite) figure")] = True,
    recipients: Annotated[
        int, typer.Option(min=0, max=100_000, help="Receive-only users in uniform cells")
    ] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Transfers/s through the HTTP API on PostgreSQL, next to pgbench tpcb-like."""
    from payflow.bench.api import run_api_bench

    report = run_api_bench(
        console=Console(stderr=True) if as_json else console,
        server_url=database_url,
        clients=clients,
        server_processes=[int(x) for x in server_processes.split(",") if x],
        seconds=seconds,
        pgbench_scale=pgbench_scale,
        hot=hot,
        embedded=embedded,
        recipients=recipients,
    )
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")


@bench_app.command("events")
def bench_events(
    database_url: Annotated[
        str | None,
        typer.Option(help="A PostgreSQL server (the bench makes and drops its own databases)."),
    ] = None,
    brokers: Annotated[str, typer.Option(help="Deliveries to measure, comma-separated.")] = (
        "local,rabbitmq,nats,redis"
    ),
    events: Annotated[int, typer.Option(min=1, max=10_000_000, help="Throughput backlog")] = 20_000,
    rate: Annotated[float, typer.Option(min=1, max=100_000, help="Latency: events/s")] = 500.0,
    seconds: Annotated[float, typer.Option(min=0.5, max=600)] = 5.0,
    poll_ms: Annotated[float, typer.Option(min=1, max=60_000, help="Relay/log poll")] = 50.0,
    batch: Annotated[int, typer.Option(min=1, max=8190, help="Transfers per ledger batch")] = 100,
    accounts: Annotated[int, typer.Option(min=100, max=10_000_000)] = 10_000,
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/",
    nats_url: str = "nats://127.0.0.1:4222",
    redis_url: str = "redis://127.0.0.1:6379/0",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Events/s and commit-to-effect latency per delivery, and the outbox's cost."""
    from payflow.bench.events import parse_deliveries, run_events_bench

    report = run_events_bench(
        console=Console(stderr=True) if as_json else console,
        server_url=database_url,
        deliveries=parse_deliveries(brokers),
        urls={"rabbitmq": rabbitmq_url, "nats": nats_url, "redis": redis_url},
        events=events,
        rate=rate,
        seconds=seconds,
        poll_ms=poll_ms,
        batch=batch,
        accounts=accounts,
    )
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")


bank_sim_app = typer.Typer(
    help="The partner-bank simulator (docs/banksim.md): serve it, or fetch a statement."
)
app.add_typer(bank_sim_app, name="bank-sim")
_RATE = typer.Option(min=0.0, max=1.0)


@bank_sim_app.callback(invoke_without_command=True)
def bank_sim(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Default: PAYFLOW_BANKSIM_HOST")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Default: 8081")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The bank's own store (SQLite file or PostgreSQL)")
    ] = None,
    latency_ms: Annotated[float | None, typer.Option(min=0, help="Added to every /v1 call")] = (
        None
    ),
    failure_rate: Annotated[float | None, _RATE] = None,
    timeout_rate: Annotated[float | None, _RATE] = None,
    lost_response_rate: Annotated[float | None, _RATE] = None,
    unavailable_rate: Annotated[float | None, _RATE] = None,
    timeout_hold_s: Annotated[float | None, typer.Option(min=0, max=600)] = None,
    seed: Annotated[int | None, typer.Option(help="Repeatable faults and discrepancies")] = None,
    fee_per_credit: Annotated[int | None, typer.Option(min=0, help="Minor units")] = None,
    missing_line_rate: Annotated[float | None, _RATE] = None,
    unexpected_line_rate: Annotated[float | None, _RATE] = None,
) -> None:
    """Serve the bank simulator until SIGTERM/SIGINT (its own store, created at start)."""
    if ctx.invoked_subcommand is not None:
        return
    from payflow.banksim import BankSimConfig, run_bank_sim

    flags = dict(ctx.params)
    try:
        config = BankSimConfig.from_settings(get_settings(), **flags)
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    run_bank_sim(config)


@bank_sim_app.command("statement")
def bank_sim_statement(
    date: Annotated[str, typer.Option(help="YYYY-MM-DD (UTC)")],
    format: Annotated[str, typer.Option(help="csv, mt940 or camt053")] = "csv",
    url: Annotated[str | None, typer.Option(help="Default: the configured simulator")] = None,
) -> None:
    """Print one day's statement of PayFlow's account at the simulated bank."""
    import httpx

    settings = get_settings()
    base = url or f"http://{settings.banksim_host}:{settings.banksim_port}"
    try:
        response = httpx.get(f"{base}/v1/statements/{date}", params={"format": format})
    except httpx.HTTPError as error:
        console.print(f"[red]cannot reach the bank simulator at {base}: {error}[/red]")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        console.print(f"[red]{response.status_code}: {response.text}[/red]")
        raise typer.Exit(1)
    sys.stdout.write(response.text)


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
