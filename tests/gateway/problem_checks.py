"""What every problem answer must look like to a caller (RFC 9457, API.md "Conventions")."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Insist on a problem+json answer with this status and `type: /problems/<code>`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_MEMBERS, body
    assert body["type"] == f"/problems/{code}", body
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def assert_validation_problem(response: httpx.Response) -> list[dict[str, Any]]:
    """A 422 whose `errors` are `{loc, msg, type}` items; returns them."""
    body = assert_problem(response, 422, "validation-error")
    issues: list[dict[str, Any]] = body["errors"]
    assert issues
    for issue in issues:
        assert set(issue) == {"loc", "msg", "type"}, issue
        assert isinstance(issue["loc"], list)
    return issues


def error_locations(response: httpx.Response) -> list[list[str | int]]:
    """The `loc` of each validation issue of a 422 answer."""
    return [issue["loc"] for issue in assert_validation_problem(response)]
