"""The simulator's configuration: from PayFlow's settings, `payflow bank-sim` flags, and
(for the fault and statement knobs) `PUT /sim/config` at run time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from payflow.banksim.domain import Rates
from payflow.config import Settings, normalize_database_url


@dataclass(frozen=True, slots=True)
class BankSimConfig:
    """Everything one bank simulator process needs."""

    host: str = "127.0.0.1"
    port: int = 8081
    database_url: str = "sqlite+aiosqlite:///./payflow-banksim.db"
    # The nostro account's currency: credits in any other currency are rejected.
    currency: str = "INR"
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    lost_response_rate: float = 0.0
    unavailable_rate: float = 0.0
    timeout_hold_s: float = 10.0
    seed: int | None = None
    fee_per_credit: int = 0
    missing_line_rate: float = 0.0
    unexpected_line_rate: float = 0.0
    # Demo accounts (asha@okbank, ...) created at first start.
    seed_demo_accounts: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BankSimConfig:
        """The configuration from `settings`, with flags given (not None) taking over."""
        values: dict[str, Any] = {
            field.name: getattr(settings, f"banksim_{field.name}")
            for field in dataclasses.fields(cls)
            if hasattr(settings, f"banksim_{field.name}")
        }
        values["currency"] = settings.default_currency
        values.update({key: value for key, value in overrides.items() if value is not None})
        values["database_url"] = normalize_database_url(values["database_url"])
        config = cls(**values)
        config.check()
        return config

    def rates(self) -> Rates:
        """The fault rates."""
        return Rates(
            failure=self.failure_rate,
            timeout=self.timeout_rate,
            lost_response=self.lost_response_rate,
            unavailable=self.unavailable_rate,
        )

    def check(self) -> None:
        """Raise ValueError for a configuration the simulator cannot run with."""
        for name in (
            "failure_rate",
            "timeout_rate",
            "lost_response_rate",
            "unavailable_rate",
            "missing_line_rate",
            "unexpected_line_rate",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.rates().total() > 1.0:
            raise ValueError("the fault rates add up to more than 1")
        if self.latency_ms < 0 or self.timeout_hold_s < 0 or self.fee_per_credit < 0:
            raise ValueError("latency_ms, timeout_hold_s and fee_per_credit cannot be negative")
