"""Compact JSON text (`payflow.jsontext`): the same bytes as the standard library's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payflow.api.replies import Reply
from payflow.jsontext import dumps_compact


def _stdlib(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# PayFlow's payloads: string keys; strings, integers of any size, booleans, null, nested.
payloads = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(payloads)
def test_agrees_with_the_standard_library(value: Any) -> None:
    assert dumps_compact(value) == _stdlib(value)


@pytest.mark.parametrize(
    "value",
    [
        {"note": "chai ☕ for Zoë", "amount": 100},
        {"text": 'quote " backslash \\ newline \n tab \t nul \x00 del \x7f'},
        {"line_separator": "\u2028\u2029", "emoji": "💸"},
        {"balance": 2**70, "negative": -(2**64)},
        {"lone_surrogate": "\ud800"},
        [],
        {},
    ],
    ids=["unicode", "escapes", "separators", "beyond-64-bits", "surrogate", "list", "object"],
)
def test_agrees_on_the_edge_cases(value: Any) -> None:
    assert dumps_compact(value) == _stdlib(value)


def test_refuses_what_json_cannot_say() -> None:
    with pytest.raises(TypeError):
        dumps_compact({"at": object()})


class TestReplyEncoded:
    def test_is_the_compact_body(self) -> None:
        reply = Reply(201, {"id": "txn_1", "amount": 5, "note": "é"})
        assert reply.encoded() == '{"id":"txn_1","amount":5,"note":"é"}'

    def test_is_encoded_once(self) -> None:
        reply = Reply(201, {"id": "txn_1"})
        assert reply.encoded() is reply.encoded()

    def test_equality_ignores_the_cached_text(self) -> None:
        encoded = Reply(201, {"id": "txn_1"})
        encoded.encoded()
        assert encoded == Reply(201, {"id": "txn_1"})
