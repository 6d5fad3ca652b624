"""A reply decided inside a transaction: what the client gets, and what a replay returns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlalchemy.sql import Executable

from payflow.api.problems import problem
from payflow.errors import PayFlowError


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]

    def encoded(self) -> str:
        """The body as stored and sent (compact JSON)."""
        return json.dumps(self.body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    @classmethod
    def error(cls, error: PayFlowError) -> Reply:
        return cls(error.http_status, problem(error.code, error.message, error.http_status))


@dataclass(frozen=True, slots=True)
class Completion:
    """The reply plus the rows to write with the ledger batch (same transaction)."""

    reply: Reply
    inserts: Sequence[tuple[Table, dict[str, Any]]] = ()
    statements: Sequence[Executable] = ()
