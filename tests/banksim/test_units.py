"""The simulator's pure parts: fault draws, scripted faults, discrepancies, configuration."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from payflow.banksim.config import BankSimConfig
from payflow.banksim.domain import FaultKind, Rates, discrepancy_for, draw_fault, is_other_bank_vpa
from payflow.banksim.faults import SCRIPTED_FAULTS_MAX, FaultPlan, ScriptedFault
from payflow.config import Settings


class TestDrawFault:
    def test_rates_are_followed(self) -> None:
        rates = Rates(failure=0.1, timeout=0.2, lost_response=0.3, unavailable=0.15)
        rng = random.Random(1)
        counts = Counter(draw_fault(rng, rates, "credit") for _ in range(20_000))
        expected: list[tuple[FaultKind | None, float]] = [
            ("failure", 0.1),
            ("timeout", 0.2),
            ("lost_response", 0.3),
            ("unavailable", 0.15),
            (None, 0.25),
        ]
        for kind, rate in expected:
            assert abs(counts[kind] / 20_000 - rate) < 0.02, (kind, counts)

    def test_inquiries_only_time_out_or_are_unavailable(self) -> None:
        rates = Rates(failure=0.5, lost_response=0.5)
        rng = random.Random(2)
        assert {draw_fault(rng, rates, "inquiry") for _ in range(200)} == {None}
        rates = Rates(timeout=0.5, unavailable=0.5)
        assert {draw_fault(rng, rates, "inquiry") for _ in range(200)} == {"timeout", "unavailable"}

    def test_no_rates_no_faults(self) -> None:
        rng = random.Random(3)
        assert {draw_fault(rng, Rates(), "credit") for _ in range(500)} == {None}


class TestFaultPlan:
    def test_seeded_plans_repeat(self) -> None:
        rates = Rates(failure=0.5)
        first, second = FaultPlan(rates, seed=9), FaultPlan(rates, seed=9)
        draws = [first.next("credit", "r") for _ in range(50)]
        assert draws == [second.next("credit", "r") for _ in range(50)]
        first.reseed(9)
        assert draws == [first.next("credit", "r") for _ in range(50)]

    def test_scripted_faults_first_then_rates(self) -> None:
        plan = FaultPlan(Rates(), seed=1)
        plan.add(ScriptedFault("inquiry", "timeout", 1))
        plan.add(ScriptedFault("credit", "failure", 2, reference_prefix="a"))
        assert plan.next("credit", "b1") is None
        assert plan.next("credit", "a1") == "failure"
        assert plan.next("inquiry", "a1") == "timeout"
        assert plan.next("credit", "a2") == "failure"
        assert plan.next("credit", "a3") is None
        assert plan.scripted == []

    def test_bounded(self) -> None:
        plan = FaultPlan(Rates(), seed=1)
        for _ in range(SCRIPTED_FAULTS_MAX):
            plan.add(ScriptedFault("credit", "failure", 1))
        with pytest.raises(OverflowError):
            plan.add(ScriptedFault("credit", "failure", 1))
        plan.clear()
        assert plan.scripted == []


class TestDiscrepancy:
    def test_depends_on_seed_and_reference_only(self) -> None:
        kwargs = {"amount": 1000, "fee": 7, "missing_rate": 0.5, "unexpected_rate": 0.5}
        same = {discrepancy_for(seed=1, reference="x", **kwargs) for _ in range(5)}  # type: ignore[arg-type]
        assert len(same) == 1
        draws = {discrepancy_for(seed=s, reference="x", **kwargs) for s in range(50)}  # type: ignore[arg-type]
        assert len(draws) > 5
        for d in draws:
            assert d.fee == 7 and 0 <= d.unexpected_amount <= 1000

    def test_rates_zero_and_one(self) -> None:
        never = discrepancy_for(
            seed=1, reference="x", amount=5, fee=0, missing_rate=0, unexpected_rate=0
        )
        assert (never.booked_late, never.unexpected_amount) == (False, 0)
        always = discrepancy_for(
            seed=1, reference="x", amount=5, fee=0, missing_rate=1, unexpected_rate=1
        )
        assert always.booked_late and 1 <= always.unexpected_amount <= 5


class TestVpa:
    @pytest.mark.parametrize("vpa", ["asha@okbank", "a.b-c_d@ybl", "9876543210@upi"])
    def test_other_banks(self, vpa: str) -> None:
        assert is_other_bank_vpa(vpa)

    @pytest.mark.parametrize(
        "vpa", ["asha@payflow", "asha@PAYFLOW", "asha", "@x", "a@b", "a@@bank"]
    )
    def test_not_other_banks(self, vpa: str) -> None:
        assert not is_other_bank_vpa(vpa)


class TestConfig:
    def test_from_settings_then_flags(self) -> None:
        settings = Settings(
            banksim_port=9001,
            banksim_failure_rate=0.25,
            banksim_seed=5,
            banksim_database_url="sqlite:///./x.db",
            default_currency="USD",
        )
        config = BankSimConfig.from_settings(settings, port=None, timeout_rate=0.5)
        assert (config.port, config.failure_rate, config.timeout_rate) == (9001, 0.25, 0.5)
        assert (config.seed, config.currency) == (5, "USD")
        assert config.database_url == "sqlite+aiosqlite:///./x.db"

    @pytest.mark.parametrize(
        "flags",
        [
            {"failure_rate": 0.6, "unavailable_rate": 0.6},
            {"missing_line_rate": 1.5},
            {"latency_ms": -1.0},
            {"fee_per_credit": -1},
        ],
    )
    def test_impossible_configurations(self, flags: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            BankSimConfig.from_settings(Settings(), **flags)

    def test_settings_refuse_bad_rates(self) -> None:
        with pytest.raises(ValueError):
            Settings(banksim_failure_rate=2)
