"""UUIDv7 generation and the public, type-prefixed id form."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest

import payflow.ids as ids_module
from payflow.errors import PayFlowError
from payflow.ids import format_public_id, parse_public_id, uuid7, uuid7_time_ms


class TestUuid7:
    def test_version_and_variant_bits(self) -> None:
        for _ in range(100):
            value = uuid7()
            assert value.version == 7
            assert value.variant == uuid.RFC_4122
            assert (value.int >> 76) & 0xF == 0x7
            assert (value.int >> 62) & 0b11 == 0b10

    def test_strictly_increasing_over_10k_calls(self) -> None:
        values = [uuid7() for _ in range(10_000)]
        assert all(a < b for a, b in itertools.pairwise(values))
        assert len(set(values)) == len(values)

    def test_timestamp_is_the_current_unix_millisecond(self) -> None:
        before = time.time_ns() // 1_000_000
        value = uuid7()
        after = time.time_ns() // 1_000_000
        # The generator may run ahead by a millisecond or two when its counter overflows.
        assert before <= uuid7_time_ms(value) <= after + 5

    def test_timestamp_extraction_of_a_known_value(self) -> None:
        ms = 1_700_000_000_123
        value = uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62))
        assert uuid7_time_ms(value) == ms

    def test_time_of_a_non_v7_uuid_is_refused(self) -> None:
        with pytest.raises(AssertionError):
            uuid7_time_ms(uuid.uuid4())

    def test_counter_overflow_advances_the_millisecond(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        frozen_ms = time.time_ns() // 1_000_000 + 86_400_000
        monkeypatch.setattr(ids_module, "_last_ms", 0)
        monkeypatch.setattr(ids_module, "_last_rand_a", 0)
        monkeypatch.setattr(time, "time_ns", lambda: frozen_ms * 1_000_000)
        values = [uuid7() for _ in range(5_000)]  # > 4096 counter values in one ms
        assert all(a < b for a, b in itertools.pairwise(values))
        stamps = [uuid7_time_ms(v) for v in values]
        assert stamps[0] == frozen_ms
        assert stamps[-1] == frozen_ms + 1
        assert all(v.version == 7 for v in values)

    def test_clock_stepping_back_keeps_order(self, monkeypatch: pytest.MonkeyPatch) -> None:
        now_ms = time.time_ns() // 1_000_000 + 86_400_000
        monkeypatch.setattr(ids_module, "_last_ms", 0)
        monkeypatch.setattr(ids_module, "_last_rand_a", 0)
        monkeypatch.setattr(time, "time_ns", lambda: now_ms * 1_000_000)
        first = uuid7()
        monkeypatch.setattr(time, "time_ns", lambda: (now_ms - 1000) * 1_000_000)
        second = uuid7()
        assert first < second
        assert uuid7_time_ms(second) == now_ms


class TestPublicId:
    def test_format(self) -> None:
        value = uuid7()
        text = format_public_id("txn", value)
        assert text == f"txn_{value.hex}"
        assert len(text) == 4 + 32

    def test_round_trip(self) -> None:
        for prefix in ("txn", "acc", "pay"):
            value = uuid7()
            assert parse_public_id(prefix, format_public_id(prefix, value)) == value

    def test_bare_uuid_is_accepted(self) -> None:
        value = uuid7()
        assert parse_public_id("txn", str(value)) == value
        assert parse_public_id("txn", value.hex) == value

    @pytest.mark.parametrize(
        "text", ["", "txn_", "txn_xyz", "txn_" + "0" * 31, "txn_" + "g" * 32, "hello"]
    )
    def test_invalid_parse(self, text: str) -> None:
        with pytest.raises(PayFlowError) as caught:
            parse_public_id("txn", text)
        assert caught.value.code == "invalid_id"
        assert caught.value.http_status == 422

    def test_other_prefix_is_refused(self) -> None:
        text = format_public_id("acc", uuid7())
        with pytest.raises(PayFlowError) as caught:
            parse_public_id("txn", text)
        assert caught.value.code == "invalid_id"

    @pytest.mark.parametrize("prefix", ["Txn", "tx1", "", "t_x"])
    def test_invalid_prefix_is_refused(self, prefix: str) -> None:
        with pytest.raises(AssertionError):
            format_public_id(prefix, uuid7())
