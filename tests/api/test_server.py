"""The API process's own settings: its garbage collector (checked in a fresh interpreter,
since the collector's settings are process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import gc, json
from payflow.api.server import app_factory
before = gc.get_threshold()
app_factory()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def _gc_after_app_factory(tmp_path: Path, threshold: str | None) -> dict[str, object]:
    env = {**os.environ, "PAYFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gc.db"}
    env.pop("PAYFLOW_API_GC_THRESHOLD", None)
    if threshold is not None:
        env["PAYFLOW_API_GC_THRESHOLD"] = threshold
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    probed: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return probed


def test_the_default_raises_the_young_threshold_and_freezes_startup(tmp_path: Path) -> None:
    probed = _gc_after_app_factory(tmp_path, None)
    assert probed["after"] == [50_000, 20, 20]
    assert probed["before"] != probed["after"]
    assert isinstance(probed["frozen"], int) and probed["frozen"] > 10_000


def test_a_configured_threshold(tmp_path: Path) -> None:
    assert _gc_after_app_factory(tmp_path, "1234")["after"] == [1234, 20, 20]


def test_zero_keeps_pythons_own(tmp_path: Path) -> None:
    probed = _gc_after_app_factory(tmp_path, "0")
    assert probed["after"] == probed["before"]
    assert probed["frozen"] == 0


@pytest.mark.parametrize("bad", ["-1", "ten", "1.5", "10000001"])
def test_a_bad_threshold_stops_the_process(tmp_path: Path, bad: str) -> None:
    env = {**os.environ, "PAYFLOW_API_GC_THRESHOLD": bad}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "api_gc_threshold" in result.stderr
