"""`payflow bench events` on the terminal: one row per delivery, then the outbox's cost."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

# Cores used by other jobs during a phase beyond which its figures are called into doubt.
OTHER_CPU_SHARE_MAX = 0.2
# A producer below this share of the asked rate could not keep up: the machine was full.
PRODUCER_RATE_SHARE_MIN = 0.95


def _cpu(shares: dict[str, Any]) -> str:
    return "/".join(f"{shares[k]:.2f}" for k in ("bench", "postgresql", "broker", "other"))


def _relay(r: dict[str, Any]) -> str:
    if r["relay_p50_ms"] is None:
        return "-"
    return f"{r['relay_p50_ms']:.1f}/{r['relay_p99_ms']:.1f}"


def print_report(console: Console, report: dict[str, Any]) -> None:
    """The deliveries' table, where the CPU went, the outbox-cost lines and the settings."""
    s = report["settings"]
    table = Table(
        title=(
            f"PayFlow event backbone on PostgreSQL ({report['machine']['cpus']} CPUs):"
            f" {s['events']:,} events written up front, then {s['rate_per_s']:,g} events/s"
            f" for {s['seconds']:g} s; poll {s['poll_interval_ms']:g} ms"
        ),
        title_justify="left",
    )
    for column in ("delivery", "events/s", "p50 ms", "p99 ms", "max ms", "relay p50/p99 ms"):
        table.add_column(column, justify="left" if column == "delivery" else "right")
    for r in report["deliveries"]:
        table.add_row(
            r["delivery"],
            f"{r['events_per_s']:,.0f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
            _relay(r),
        )
    console.print(table)
    cpu = Table(
        title="CPU, cores busy: bench process/PostgreSQL/broker/other", title_justify="left"
    )
    for column in ("delivery", "throughput", "latency"):
        cpu.add_column(column, justify="left" if column == "delivery" else "right")
    for r in report["deliveries"]:
        cpu.add_row(r["delivery"], _cpu(r["cpu_throughput"]), _cpu(r["cpu_latency"]))
    console.print(cpu)
    _print_outbox_cost(console, report)
    _print_notes(console, report)


def _print_outbox_cost(console: Console, report: dict[str, Any]) -> None:
    s = report["settings"]
    console.print(
        f"Outbox cost on ledger batches of {s['batch']} transfers ({s['seconds']:g} s each,"
        f" {s['accounts']:,} accounts, one transfer.completed row of"
        f" {s['event_data_bytes']} bytes of data per transfer):"
    )
    for c in report["outbox_cost"]:
        clients = f"{c['clients']} client{'' if c['clients'] == 1 else 's'}"
        console.print(
            f"  {clients}: {c['without_outbox_transfers_per_s']:,.0f} transfers/s without,"
            f" {c['with_outbox_transfers_per_s']:,.0f} with the outbox: {c['ratio']:.2f}×"
            f" (client CPU {c['without_outbox_client_cpu_us_per_transfer']:.0f} →"
            f" {c['with_outbox_client_cpu_us_per_transfer']:.0f} µs/transfer)"
        )


def _print_notes(console: Console, report: dict[str, Any]) -> None:
    s = report["settings"]
    console.print(
        f"Settings: relay batch {s['relay_batch_size_max']}, consumer batch"
        f" {s['consumer_batch_size_max']}, producer commits every"
        f" {s['producer_tick_ms']:g} ms; broker namespace {report['broker_namespace']}"
        " (removed)."
    )
    console.print(
        "Relay, consumer and producer run as asyncio tasks in the bench process, on the"
        " same cores as PostgreSQL and the broker. Latency: the processed record's time"
        " minus the producer's commit; relay: the commit to the broker's confirmation."
        " The bench consumer does nothing else: real consumers add their own work."
    )
    for r in report["deliveries"]:
        if r["latency_rate_per_s"] < PRODUCER_RATE_SHARE_MIN * s["rate_per_s"]:
            console.print(
                f"[yellow]{r['delivery']}: the producer fell behind, committing"
                f" {r['latency_rate_per_s']:,.0f} events/s of {s['rate_per_s']:,g}.[/yellow]"
            )
    others = [
        r["delivery"]
        for r in report["deliveries"]
        for phase in ("cpu_throughput", "cpu_latency")
        if r[phase]["other"] > OTHER_CPU_SHARE_MAX
    ]
    if others:
        console.print(
            f"[yellow]Other work on the machine used more than {OTHER_CPU_SHARE_MAX} cores"
            f" during {', '.join(sorted(set(others)))}: those figures are lower than a quiet"
            " machine's.[/yellow]"
        )
