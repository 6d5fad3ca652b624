"""Compact JSON text for what PayFlow stores and sends on its busiest paths.

Replies and event payloads are encoded by orjson, a few times faster than the standard
library, which still encodes what orjson refuses (integers beyond 64 bits, such as a sum
of balances). The two agree on these payloads byte for byte: keys are strings, values
are strings, integers, booleans, null, lists and objects (PayFlow's payloads carry no
floats), non-ASCII text is written as UTF-8, and nothing is padded with spaces.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_compact(value: Any) -> str:
    """`value` as compact JSON text, as `json.dumps` with `separators=(",", ":")` and
    `ensure_ascii=False` writes it. (A float NaN would differ: orjson writes null where
    `allow_nan=False` refuses; no payload written here has floats.)"""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
