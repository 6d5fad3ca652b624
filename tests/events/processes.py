"""PayFlow processes for crash tests: `payflow relay` and `payflow worker` as real
subprocesses, killed with SIGKILL and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PAYFLOW = str(Path(sys.executable).parent / "payflow")


@dataclass
class Process:
    """One PayFlow command, restartable; its output goes to a log file for post-mortems."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    kills: int = 0
    starts: int = field(default=0)

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [PAYFLOW, *self.argv], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release, no ack: the crash the backbone must survive."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.kills += 1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def payflow_env(**settings: object) -> dict[str, str]:
    """The environment of a PayFlow subprocess: this one's, with PAYFLOW_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYFLOW_")}
    for name, value in settings.items():
        if value is not None:
            env[f"PAYFLOW_{name.upper()}"] = str(value)
    return env
