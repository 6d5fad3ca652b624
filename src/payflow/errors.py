"""Expected failures that cross a boundary carry a stable machine code and an HTTP status."""

from __future__ import annotations


class PayFlowError(Exception):
    """An expected failure: `code` is stable and machine-readable, `http_status` for the API."""

    def __init__(self, code: str, message: str, *, http_status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status

    def __repr__(self) -> str:
        return f"PayFlowError({self.code!r}, {self.message!r}, http_status={self.http_status})"
