"""`payflow bank-sim`: a process of its own, configured by flags."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from payflow.cli import app
from tests.banksim.conftest import credit_body
from tests.services import free_port, is_listening


def test_serves_with_the_flags_given(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "bank.db"
    argv = [sys.executable, "-m", "payflow.cli", "bank-sim", "--port", str(port)]
    argv += ["--database-url", f"sqlite:///{store}", "--failure-rate", "1", "--seed", "4"]
    argv += ["--fee-per-credit", "300"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not is_listening("127.0.0.1", port):
            assert process.poll() is None, "the simulator exited"
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            outcome = http.post("/v1/credits", json=credit_body()).json()
            config = http.get("/sim/config").json()
        assert (outcome["status"], outcome["reason"]) == ("rejected", "bank_declined")
        assert (config["failure_rate"], config["seed"], config["fee_per_credit"]) == (1.0, 4, 300)
        assert store.exists()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.returncode == -signal.SIGTERM
    assert b"Application shutdown complete" in output


def test_refuses_rates_adding_up_past_one() -> None:
    result = CliRunner().invoke(app, ["bank-sim", "--failure-rate", "0.7", "--timeout-rate", "0.7"])
    assert result.exit_code == 2
    assert "more than 1" in result.output


def test_refuses_a_rate_out_of_range() -> None:
    result = CliRunner().invoke(app, ["bank-sim", "--unavailable-rate", "1.5"])
    assert result.exit_code == 2
