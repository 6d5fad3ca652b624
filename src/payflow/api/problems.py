"""RFC 9457 problem details: every error PayFlow's API returns has this shape."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(
    code: str, detail: str, status: int, *, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A problem document with PayFlow's stable machine `code`."""
    document: dict[str, Any] = {
        "type": f"urn:payflow:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        document["errors"] = errors
    return document


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An error (RFC 9457). `code` is stable: branch on it, not on `detail`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:payflow:problem:insufficient_funds"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["insufficient_funds"])
    errors: list[FieldError] | None = None


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route can answer with.

    Only `application/problem+json` is listed (no `model`, which would add an
    `application/json` entry); `create_app` puts the `Problem` schema in the components.
    """
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
