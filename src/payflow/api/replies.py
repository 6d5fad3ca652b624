"""A reply decided inside a transaction: what the client gets, and what a replay returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.sql import Executable

from payflow.api.problems import problem
from payflow.errors import PayFlowError
from payflow.jsontext import dumps_compact


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    # `encoded()`, once: a reply is stored with its batch and then sent.
    _encoded: str | None = field(default=None, init=False, repr=False, compare=False)

    def encoded(self) -> str:
        """The body as stored and sent (compact JSON). The body must not change after."""
        encoded = self._encoded
        if encoded is None:
            encoded = dumps_compact(self.body)
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @classmethod
    def error(cls, error: PayFlowError) -> Reply:
        return cls(error.http_status, problem(error.code, error.message, error.http_status))


@dataclass(frozen=True, slots=True)
class Completion:
    """The reply plus the rows to write with the ledger batch (same transaction)."""

    reply: Reply
    inserts: Sequence[tuple[Table, dict[str, Any]]] = ()
    statements: Sequence[Executable] = ()
