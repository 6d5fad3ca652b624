"""`payflow bench api`'s verdicts and its table on the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

RATIO_TO_PGBENCH_MIN = 1.0
P99_MS_MAX = 100.0
HOT_TO_UNIFORM_MIN = 0.5
# The generator is "not the bottleneck" while it uses at most this share of one core and
# could drive at least this multiple of the fastest cell's rate.
LOADGEN_CPU_SHARE_MAX = 0.5
LOADGEN_HEADROOM_MIN = 2.0
# Cores used by other jobs during a cell beyond which its figures are called into doubt.
OTHER_CPU_SHARE_MAX = 0.2


def _verdict(target: str, processes: int, measured: str, ok: bool) -> dict[str, Any]:
    return {"target": target, "server_processes": processes, "measured": measured, "ok": ok}


def verdicts(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, per PostgreSQL process count: a failed cell fails its target."""
    cells = {
        (r["server_processes"], r["distribution"]): r
        for r in results
        if r["database"] == "postgresql"
    }
    found = []
    for n in sorted({processes for processes, _ in cells}):
        uniform, hot = cells.get((n, "uniform")), cells.get((n, "hot"))
        if uniform is None:
            continue
        ratio, p99 = uniform["ratio_to_pgbench"], uniform["p99_ms"]
        ok = not uniform["failed"] and ratio >= RATIO_TO_PGBENCH_MIN and p99 <= P99_MS_MAX
        target = f"uniform ≥ {RATIO_TO_PGBENCH_MIN:.1f}× pgbench with p99 ≤ {P99_MS_MAX:.0f} ms"
        found.append(_verdict(target, n, f"{ratio:.2f}× pgbench, p99 {p99:.1f} ms", ok))
        if hot is not None:
            rate = uniform["transfers_per_s"]
            ratio = hot["transfers_per_s"] / rate if rate else 0.0
            ok = not (hot["failed"] or uniform["failed"]) and ratio >= HOT_TO_UNIFORM_MIN
            target = f"hot ≥ {HOT_TO_UNIFORM_MIN:.1f}× uniform"
            found.append(_verdict(target, n, f"{ratio:.2f}× uniform", ok))
    return found


def loadgen_evidence(report: dict[str, Any]) -> dict[str, Any]:
    """Why the load generator was (or was not) the bottleneck, from its own measurements."""
    results, calibration = report["results"], report["calibration"]
    rate_max = max((r["transfers_per_s"] for r in results), default=0.0)
    share_max = max((r["loadgen_cpu_share"] for r in results), default=0.0)
    headroom = calibration["requests_per_s"] / rate_max if rate_max else float("inf")
    ok = share_max <= LOADGEN_CPU_SHARE_MAX and headroom >= LOADGEN_HEADROOM_MIN
    return {
        "not_the_bottleneck": ok,
        "loadgen_cpu_share_max": round(share_max, 3),
        "ceiling_to_fastest_cell": round(headroom, 1) if rate_max else None,
    }


def _spread(runs: list[float]) -> str:
    return f"{len(runs)} runs, {min(runs):,.0f}–{max(runs):,.0f}"


def print_report(console: Console, report: dict[str, Any]) -> None:
    """The pgbench line, the table, the load generator's evidence and the verdicts."""
    pgbench = report["pgbench"]
    table = Table(
        title=(
            f"PayFlow HTTP API: {report['clients']} clients, {report['seconds']:g} s per cell;"
            f" pgbench tpcb-like (scale {pgbench['scale']}, {pgbench['clients']} clients,"
            f" same server, same run, before and after each cell):"
            f" {report['pgbench_tps']:,.0f} tps ({_spread(report['pgbench_runs_tps'])})"
        ),
        title_justify="left",
    )
    for column in (
        "database",
        "processes",
        "distribution",
        "transfers/s",
        "× pgbench",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU api/pg/gen/other",
        "peak RSS MiB (main; workers)",
    ):
        left = column in ("database", "distribution", "peak RSS MiB (main; workers)")
        table.add_column(column, justify="left" if left else "right")
    for r in report["results"]:
        style = "red" if r["failed"] else None
        table.add_row(
            r["database"],
            str(r["server_processes"]),
            r["distribution"],
            f"{r['transfers_per_s']:,.0f}",
            f"{r['ratio_to_pgbench']:.2f}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['errors']:,}",
            "/".join(
                f"{r[k]:.2f}"
                for k in (
                    "server_cpu_share",
                    "postgres_cpu_share",
                    "loadgen_cpu_share",
                    "other_cpu_share",
                )
            ),
            _rss(r["peak_rss_mib"]),
            style=style,
        )
    console.print(table)
    _print_notes(console, report)


def _rss(peaks: list[dict[str, Any]]) -> str:
    """'main' alone, or 'main; worker, worker' (helpers such as multiprocessing's resource
    tracker are in the JSON only)."""
    main = [f"{p['peak_rss_mib']:.0f}" for p in peaks if p["role"] == "main"]
    workers = [f"{p['peak_rss_mib']:.0f}" for p in peaks if p["role"] == "worker"]
    return "; ".join([", ".join(main), ", ".join(workers)] if workers else main)


def _print_notes(console: Console, report: dict[str, Any]) -> None:
    calibration, evidence = report["calibration"], report["loadgen"]
    cpus = report["machine"]["cpus"]
    console.print(
        "× pgbench: a cell's rate over the mean of the pgbench runs just before and just"
        " after it (the heading gives the mean and the range of all runs)."
    )
    console.print(
        f"CPU: cores busy on average in the measured window (of {cpus}): the API's processes,"
        " PostgreSQL's, the load generator's, and everything else on the machine."
    )
    other = max((r["other_cpu_share"] for r in report["results"]), default=0.0)
    if other > OTHER_CPU_SHARE_MAX:
        console.print(
            f"[yellow]Other work on the machine used up to {other:.2f} cores during the cells:"
            " these figures are lower than a quiet machine's.[/yellow]"
        )
    ceiling = evidence["ceiling_to_fastest_cell"]
    headroom = f" ({ceiling:.0f}× the fastest cell)" if ceiling is not None else ""
    verdict = (
        "[green]it was not the bottleneck[/green]"
        if evidence["not_the_bottleneck"]
        else "[red]it may have been the bottleneck[/red]"
    )
    console.print(
        f"Load generator (own process, one keep-alive connection per client):"
        f" {calibration['loadgen_cpu_us_per_request']:.0f} µs CPU per request, at most"
        f" {evidence['loadgen_cpu_share_max']:.0%} of one core during the cells; against a"
        f" do-nothing responder it drives {calibration['requests_per_s']:,.0f} requests/s"
        f"{headroom}: {verdict}."
    )
    console.print(
        "Server settings for the run: rate limits raised to 10,000,000 requests per window"
        " and argon2 at its lowest cost (setup registers a user per client)."
    )
    console.print(
        f"uniform: each transfer pays a random one of the other {report['clients']} clients"
        f" and {report.get('uniform_recipients', 0):,} receive-only users;"
        " hot: every transfer pays one merchant."
    )
    for r in report["results"]:
        if r["errors"]:
            colour = "red" if r["failed"] else "yellow"
            console.print(
                f"[{colour}]{r['database']} {r['server_processes']}p {r['distribution']}:"
                f" {r['errors']} errors of {r['requests']} requests {r['error_statuses']}"
                f"{' — CELL FAILED (> 1%)' if r['failed'] else ''}[/{colour}]"
            )
            for sample in r["error_samples"]:
                console.print(f"  {sample}", markup=False)
            if r["server_log_tail"]:
                console.print("  payflow api's log (tail):", r["server_log_tail"], markup=False)
    for v in report["verdicts"]:
        mark = "[green]PASS[/green]" if v["ok"] else "[red]FAIL[/red]"
        n = v["server_processes"]
        processes = f"{n} server process{'' if n == 1 else 'es'}"
        console.print(f"{mark} {v['target']} ({processes}): {v['measured']}")
