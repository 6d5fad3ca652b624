"""Which fault, if any, a request suffers: scripted ones first (in the order they were
given), else a random draw at the configured rates from a seedable generator.

Scripted faults and the generator live in the simulator process's memory: they are test
and demo controls, not the bank's books.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from payflow.banksim.domain import FaultKind, Operation, Rates, draw_fault

SCRIPTED_FAULTS_MAX = 1000


@dataclass(slots=True)
class ScriptedFault:
    """`kind` for the next `times` requests of `operation` (whose reference starts with
    `reference_prefix`, when one is given)."""

    operation: Operation
    kind: FaultKind
    times: int
    reference_prefix: str | None = None

    def matches(self, operation: Operation, reference: str) -> bool:
        if operation != self.operation:
            return False
        return self.reference_prefix is None or reference.startswith(self.reference_prefix)


class FaultPlan:
    """The faults still to come, and the random generator for the rest."""

    def __init__(self, rates: Rates, *, seed: int | None) -> None:
        self.rates = rates
        self.scripted: list[ScriptedFault] = []
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Start the random sequence again from `seed` (None: a fresh random one)."""
        self._rng = random.Random(seed)

    def add(self, fault: ScriptedFault) -> None:
        """Queue a scripted fault after those already queued."""
        if len(self.scripted) >= SCRIPTED_FAULTS_MAX:
            raise OverflowError(f"at most {SCRIPTED_FAULTS_MAX} scripted faults at once")
        self.scripted.append(fault)

    def clear(self) -> None:
        """Forget every scripted fault."""
        self.scripted.clear()

    def next(self, operation: Operation, reference: str) -> FaultKind | None:
        """The fault this request suffers; a scripted one is used up by it."""
        for index, fault in enumerate(self.scripted):
            if fault.matches(operation, reference):
                fault.times -= 1
                if fault.times == 0:
                    del self.scripted[index]
                return fault.kind
        return draw_fault(self._rng, self.rates, operation)
