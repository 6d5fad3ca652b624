"""A partner bank, simulated: PayFlow pays money out to it (credits by reference, status
inquiries, faults on demand) and reconciles against its statements (docs/banksim.md)."""

from __future__ import annotations

from payflow.banksim.api import create_app
from payflow.banksim.config import BankSimConfig
from payflow.banksim.server import run_bank_sim, serve

__all__ = ["BankSimConfig", "create_app", "run_bank_sim", "serve"]
