"""What one running simulator holds in memory: its configuration (changeable at run
time), the fault plan, its database engine, and the credits it is holding."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.banksim.config import BankSimConfig
from payflow.banksim.domain import StatementPolicy
from payflow.banksim.faults import FaultPlan


@dataclass
class SimState:
    """The simulator's process state (one per app)."""

    config: BankSimConfig
    engine: AsyncEngine
    faults: FaultPlan
    # Statement discrepancies are drawn from this seed: the configured one, else one
    # chosen at start (so they are repeatable within the process's life).
    discrepancy_seed: int = field(default_factory=lambda: random.randrange(2**63))
    # Credits being processed (held by a timeout fault, or completing): awaited with
    # a shield, so a caller that hangs up does not stop the bank's own work.
    in_flight: set[asyncio.Task[object]] = field(default_factory=set)

    def statement_policy(self) -> StatementPolicy:
        """How statements deviate, as configured now."""
        seed = self.config.seed if self.config.seed is not None else self.discrepancy_seed
        return StatementPolicy(
            seed=seed,
            fee_per_credit=self.config.fee_per_credit,
            missing_line_rate=self.config.missing_line_rate,
            unexpected_line_rate=self.config.unexpected_line_rate,
        )


def get_state(request: Request) -> SimState:
    """The running simulator's state (set by the app's lifespan)."""
    state = request.app.state.banksim
    assert isinstance(state, SimState), "the simulator's lifespan has not run"
    return state
