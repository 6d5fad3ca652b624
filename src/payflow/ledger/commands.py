"""What `payflow audit`, `payflow expire-pending` and `payflow demo` do, printed with Rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from payflow.db import create_engine, run_in_transaction
from payflow.ledger.audit import AuditReport, audit
from payflow.ledger.queries import lookup_accounts
from payflow.ledger.service import expire_pending_transfers
from payflow.money import format_amount


def print_audit(console: Console, report: AuditReport) -> None:
    """The audit as a table per currency, then its verdict."""
    table = Table(title="Ledger audit", title_justify="left")
    for column in (
        "currency",
        "accounts",
        "debits posted",
        "credits posted",
        "debits pending",
        "credits pending",
        "balanced",
    ):
        table.add_column(column, justify="right" if column != "currency" else "left")
    for t in report.totals:
        table.add_row(
            t.currency,
            str(t.accounts),
            format_amount(t.debits_posted, t.currency),
            format_amount(t.credits_posted, t.currency),
            format_amount(t.debits_pending, t.currency),
            format_amount(t.credits_pending, t.currency),
            "[green]yes[/green]" if t.balanced else "[red]NO[/red]",
        )
    console.print(table)
    if report.ok:
        console.print(
            f"[green]audit passed[/green]: {report.transfers} transfers, "
            "counters equal their transfers, debits equal credits"
        )
    else:
        console.print(f"[red]audit FAILED[/red]: {len(report.violations)} violation(s)")
        for violation in report.violations:
            console.print(f"  - {violation}")


async def run_audit(console: Console, database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            report = await audit(conn)
    finally:
        await engine.dispose()
    print_audit(console, report)
    return report.ok


async def run_expire(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        return await run_in_transaction(engine, lambda conn: expire_pending_transfers(conn))
    finally:
        await engine.dispose()


async def run_demo(console: Console, database_url: str) -> bool:
    from payflow import demo
    from payflow.migrate import upgrade_async

    await upgrade_async(database_url)
    url = make_url(database_url)
    console.print(f"[bold]PayFlow demo[/bold] on {url.get_backend_name()} {url.database or ''}")
    engine = create_engine(database_url)
    try:
        for step, outcomes in await demo.load(engine):
            codes = ", ".join(str(o.code) for o in outcomes)
            console.print(f"• {step.title}: [cyan]{codes}[/cyan]")
        async with engine.connect() as conn:
            accounts = await lookup_accounts(conn, [demo.demo_id(n) for n in demo.ACCOUNTS])
            report = await audit(conn)
    finally:
        await engine.dispose()
    table = Table(title="Balances", title_justify="left")
    for column in ("account", "posted balance", "on hold", "available"):
        table.add_column(column, justify="left" if column == "account" else "right")
    for name, account in zip(demo.ACCOUNTS, accounts, strict=True):
        table.add_row(
            name,
            format_amount(account.balance, account.currency, symbol=True),
            format_amount(account.debits_pending, account.currency, symbol=True),
            format_amount(account.available, account.currency, symbol=True),
        )
    console.print(table)
    print_audit(console, report)
    return report.ok
