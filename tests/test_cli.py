"""The `payflow` command line: migrate, demo, audit, expire-pending, bench ledger, identity."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from payflow.cli import app
from payflow.db import create_engine

runner = CliRunner()


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


class TestMigrate:
    def test_creates_the_schema_and_is_repeatable(self, tmp_path: Path) -> None:
        url = _sqlite_url(tmp_path)
        for _ in range(2):
            result = runner.invoke(app, ["migrate", "--database-url", url])
            assert result.exit_code == 0, result.output
        with sqlite3.connect(tmp_path / "cli.db") as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert {"ledger_accounts", "ledger_transfers", "alembic_version"} <= tables


class TestDemo:
    def test_loads_once_and_retries_move_nothing(self, tmp_path: Path) -> None:
        url = _sqlite_url(tmp_path)
        first = runner.invoke(app, ["demo", "--database-url", url])
        assert first.exit_code == 0, first.output
        assert "audit passed" in first.output
        assert "exceeds_credits" in first.output
        second = runner.invoke(app, ["demo", "--database-url", url])
        assert second.exit_code == 0, second.output
        assert "Top-ups from linked banks: exists, exists, exists" in second.output
        # The balances did not change on the second run.
        assert first.output.split("Balances")[1] == second.output.split("Balances")[1]


class TestAudit:
    def test_passes_on_a_clean_ledger_and_fails_on_a_tampered_one(self, tmp_path: Path) -> None:
        url = _sqlite_url(tmp_path)
        assert runner.invoke(app, ["demo", "--database-url", url]).exit_code == 0
        clean = runner.invoke(app, ["audit", "--database-url", url])
        assert clean.exit_code == 0, clean.output
        with sqlite3.connect(tmp_path / "cli.db") as db:
            # The unlimited "bank" account, so no CHECK constraint stops the tampering.
            db.execute(
                "UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE flags = 0"
            )
        tampered = runner.invoke(app, ["audit", "--database-url", url])
        assert tampered.exit_code == 1
        assert "audit FAILED" in tampered.output
        assert "sum of transfers" in tampered.output

    def test_expire_pending_runs_on_an_empty_ledger(self, tmp_path: Path) -> None:
        url = _sqlite_url(tmp_path)
        assert runner.invoke(app, ["migrate", "--database-url", url]).exit_code == 0
        result = runner.invoke(app, ["expire-pending", "--database-url", url])
        assert result.exit_code == 0, result.output
        assert "expired 0 pending transfer(s)" in result.output


class TestBenchLedger:
    def test_prints_figures_next_to_pgbench(self, pg_url: str) -> None:
        """A short run: the JSON has the agreed shape and real, positive figures."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "payflow.cli",
                "bench",
                "ledger",
                "--json",
                "--database-url",
                pg_url,
                "--seconds",
                "1",
                "--pgbench-scale",
                "1",
                "--batch-sizes",
                "1,100",
                "--distributions",
                "uniform,hot-credit",
                "--clients",
                "2",
                "--processes",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["pgbench_tps"] > 0
        cells = {(r["batch_size"], r["distribution"]) for r in report["results"]}
        assert cells == {(1, "uniform"), (1, "hot-credit"), (100, "uniform"), (100, "hot-credit")}
        for r in report["results"]:
            assert r["transfers_per_s"] > 0
            assert r["failed"] == 0
            ratio = r["transfers_per_s"] / report["pgbench_tps"]
            assert abs(r["ratio_to_pgbench"] - ratio) <= 0.01
            assert 0 < r["p50_ms"] <= r["p99_ms"]

    def test_rejects_an_unknown_distribution(self) -> None:
        result = runner.invoke(app, ["bench", "ledger", "--distributions", "zipf"])
        assert result.exit_code != 0


class TestMigrations:
    def test_down_to_base_and_up_again(self, tmp_path: Path) -> None:
        """Every revision can be undone: the schema goes away and comes back."""
        from payflow.migrate import downgrade, upgrade

        url = _sqlite_url(tmp_path)
        upgrade(url)
        downgrade(url)
        with sqlite3.connect(tmp_path / "cli.db") as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert not {t for t in tables if t.startswith("ledger_")}
        upgrade(url)
        with sqlite3.connect(tmp_path / "cli.db") as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "ledger_transfers" in tables


class TestIdentityCommands:
    def _run(self, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "PAYFLOW_DATABASE_URL": _sqlite_url(tmp_path),
            "PAYFLOW_PASSWORD_HASH_MEMORY_KIB": "256",
            "PAYFLOW_PASSWORD_HASH_TIME_COST": "1",
        }
        return subprocess.run(
            [sys.executable, "-m", "payflow.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_create_operator_once_then_refuses_the_same_email(self, tmp_path: Path) -> None:
        args = ("create-operator", "--email", "Ops@Example.com", "--name", "Ops", "--handle")
        first = self._run(tmp_path, *args, "ops_admin", "--password", "long-enough-1")
        assert first.returncode == 0, first.stdout + first.stderr
        with sqlite3.connect(tmp_path / "cli.db") as db:
            rows = db.execute("SELECT email, role, password_hash FROM identity_users").fetchall()
        assert [(email, role) for email, role, _ in rows] == [("ops@example.com", "operator")]
        assert rows[0][2].startswith("$argon2id$")
        again = self._run(tmp_path, *args, "ops_other", "--password", "long-enough-1")
        assert again.returncode == 1
        assert "email_taken" in again.stdout
        short = self._run(
            tmp_path,
            "create-operator",
            "--email",
            "b@example.com",
            "--name",
            "B",
            "--handle",
            "ops_b",
            "--password",
            "short",
        )
        assert short.returncode == 1
        with sqlite3.connect(tmp_path / "cli.db") as db:
            assert db.execute("SELECT count(*) FROM identity_users").fetchone() == (1,)

    def test_rotate_signing_key_adds_the_active_key(self, tmp_path: Path) -> None:
        for expected in (1, 2):
            result = self._run(tmp_path, "rotate-signing-key")
            assert result.returncode == 0, result.stdout + result.stderr
            with sqlite3.connect(tmp_path / "cli.db") as db:
                rows = db.execute("SELECT kid FROM identity_signing_keys ORDER BY created_at")
                kids = [r[0] for r in rows]
            assert len(kids) == expected
            assert kids[-1] in result.stdout


class TestEventCommands:
    """`payflow dead-letters` and `payflow events-backlog`, as an operator runs them."""

    def _run(self, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "payflow.cli", *args],
            env={"PATH": "/usr/bin:/bin", "PAYFLOW_DATABASE_URL": _sqlite_url(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def _park(self, tmp_path: Path, consumer: str) -> str:
        import asyncio

        from payflow.events.dead_letters import park
        from payflow.migrate import upgrade
        from tests.events.support import make_events, unique_type

        upgrade(_sqlite_url(tmp_path))
        [event] = make_events(unique_type(), 1)

        async def write() -> None:
            engine = create_engine(_sqlite_url(tmp_path))
            try:
                await park(
                    engine,
                    consumer=consumer,
                    body=event.encode(),
                    event=event,
                    error="x",
                    attempts=3,
                )
            finally:
                await engine.dispose()

        asyncio.run(write())
        with sqlite3.connect(tmp_path / "cli.db") as db:
            [(letter_id,)] = db.execute(
                "SELECT id FROM events_dead_letters WHERE event_id = ?", (event.id.hex,)
            ).fetchall()
        return f"dlq_{letter_id}"

    def _statuses(self, tmp_path: Path) -> list[str]:
        with sqlite3.connect(tmp_path / "cli.db") as db:
            return [s for (s,) in db.execute("SELECT status FROM events_dead_letters ORDER BY id")]

    def test_list_and_replay_dead_letters(self, tmp_path: Path) -> None:
        first = self._park(tmp_path, "rewards")
        self._park(tmp_path, "notifications")
        listed = self._run(tmp_path, "dead-letters", "list", "--consumer", "rewards")
        assert listed.returncode == 0, listed.stderr
        assert "rewards" in listed.stdout and "notifications" not in listed.stdout
        one = self._run(tmp_path, "dead-letters", "replay", first)
        assert one.returncode == 0, one.stdout + one.stderr
        assert sorted(self._statuses(tmp_path)) == ["parked", "replaying"]
        again = self._run(tmp_path, "dead-letters", "replay", first)
        assert again.returncode == 1
        assert "dead_letter_not_parked" in again.stdout
        rest = self._run(tmp_path, "dead-letters", "replay", "--all")
        assert rest.returncode == 0
        assert "1 dead letter(s)" in rest.stdout
        assert self._statuses(tmp_path) == ["replaying", "replaying"]

    def test_bad_replays_are_refused(self, tmp_path: Path) -> None:
        self._park(tmp_path, "rewards")
        neither = self._run(tmp_path, "dead-letters", "replay")
        assert neither.returncode == 2
        assert "--all" in neither.stdout
        for bad in ("dlq_nothex", f"dlq_{'0' * 32}"):
            refused = self._run(tmp_path, "dead-letters", "replay", bad)
            assert refused.returncode == 1, refused.stdout
            assert "invalid_id" in refused.stdout or "dead_letter_not_found" in refused.stdout
        assert self._statuses(tmp_path) == ["parked"]

    def test_the_backlog_says_what_waits(self, tmp_path: Path) -> None:
        self._park(tmp_path, "rewards")
        local = self._run(tmp_path, "events-backlog")
        assert local.returncode == 0
        assert "in-process delivery" in local.stdout
        broker = self._run(
            tmp_path, "events-backlog", PAYFLOW_BROKER_URL="redis://127.0.0.1:6379/0"
        )
        assert broker.returncode == 0, broker.stderr
        assert "unpublished events: 0" in broker.stdout
