"""An unauthenticated body costs nothing; an authenticated invalid one gets a bounded answer.

The probe: a key of the right shape (`jg_` + 32 hex + `_x`) and a 989 KB body of 100 000
unknown members made the gateway validate it and answer a 9.6 MB 422, without ever looking
the key up. Each route that reads a body must check the caller first; a 422 lists at most
`MAX_ISSUES` problems and counts the rest; a batch's length is bounded by its model.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.tenants.apikeys import Scope, issue_key
from tests.factories import auth, make_api_key, make_tenant
from tests.gateway.problem_checks import assert_problem, assert_validation_problem

JSON = {"Content-Type": "application/json"}
SHAPED_ONLY = "jg_" + "0" * 32 + "_x"
"""Passes the key's shape check; no such key exists."""
MALFORMED = b'{"args": '
"""Not JSON: a route that parses before it authenticates answers 400 `malformed-json`."""
EXTRA_MEMBERS = 100_000
SMALL_REPLY_BYTES = 2_000
MAX_ISSUES = 20

BODY_ROUTES = [
    ("POST", "/jobs/echo"),
    ("POST", "/jobs/echo/batch"),
    ("POST", "/workflows"),
]
ADMIN_BODY_ROUTES = [
    ("POST", "/admin/tenants"),
    ("PUT", "/admin/tenants/acme/limits"),
    ("POST", "/admin/tenants/acme/keys"),
]


def _bloated_args() -> dict[str, object]:
    """Valid echo args plus 100 000 unknown members: 989 KB, 100 000 validation errors."""
    return {"message": "x"} | {str(index): 0 for index in range(EXTRA_MEMBERS)}


def _compact(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


class TestKeyCheckedBeforeBody:
    """A request without a valid key is refused before its body is parsed or validated."""

    @pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
    @pytest.mark.parametrize(
        "token", [SHAPED_ONLY, issue_key(uuid.uuid4()).token], ids=["shaped", "unknown"]
    )
    async def test_an_unknown_key_with_a_malformed_body_is_401(
        self, client: httpx.AsyncClient, method: str, path: str, token: str
    ) -> None:
        # A 400 `malformed-json` here would show the body was parsed before the key was known.
        response = await client.request(method, path, content=MALFORMED, headers=JSON | auth(token))
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
    async def test_no_key_with_a_malformed_body_is_401(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(method, path, content=MALFORMED, headers=JSON)
        assert_problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize(("method", "path"), ADMIN_BODY_ROUTES)
    async def test_a_wrong_operator_token_with_a_malformed_body_is_401(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await client.request(
            method, path, content=MALFORMED, headers=JSON | auth("not-the-operator-token")
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_the_probe_gets_a_small_401(self, client: httpx.AsyncClient) -> None:
        """The reported probe: 989 KB of unknown members under a key of the right shape."""
        body = _compact({"args": _bloated_args()})
        assert len(body) > 900_000
        response = await client.post("/jobs/echo", content=body, headers=JSON | auth(SHAPED_ONLY))
        assert_problem(response, 401, "unauthenticated")
        assert len(response.content) < SMALL_REPLY_BYTES

    async def test_a_key_without_the_submit_scope_is_403_before_the_body(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, _ = await make_tenant(sessionmaker, "acme")
        reader = await make_api_key(sessionmaker, tenant_id, Scope.READ)
        response = await client.post("/jobs/echo", content=MALFORMED, headers=JSON | auth(reader))
        assert_problem(response, 403, "forbidden")

    async def test_a_valid_key_still_gets_the_body_checked(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await client.post("/jobs/echo", content=MALFORMED, headers=JSON | auth(token))
        assert_problem(response, 400, "malformed-json")


class TestValidationErrorsCapped:
    """A 422 names at most 20 problems and counts the others; it echoes no input."""

    async def test_100k_unknown_members_give_a_bounded_422(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        body = _compact({"args": _bloated_args()})
        response = await client.post("/jobs/echo", content=body, headers=JSON | auth(token))
        issues = assert_validation_problem(response)
        assert len(issues) == MAX_ISSUES
        assert response.json()["errors_omitted"] == EXTRA_MEMBERS - MAX_ISSUES
        assert all(issue["type"] == "extra_forbidden" for issue in issues)
        assert len(response.content) < SMALL_REPLY_BYTES * 2

    async def test_a_few_problems_are_all_listed_with_nothing_omitted(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await client.post(
            "/jobs/echo", json={"args": {"message": 1, "extra": 2}}, headers=auth(token)
        )
        assert len(assert_validation_problem(response)) == 2
        assert "errors_omitted" not in response.json()

    async def test_a_huge_invalid_value_is_not_echoed(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        huge = "7" * 900_000  # not an integer `repeat` accepts: a string of 900 KB
        response = await client.post(
            "/jobs/echo", json={"args": {"message": "x", "repeat": huge}}, headers=auth(token)
        )
        assert_validation_problem(response)
        assert len(response.content) < SMALL_REPLY_BYTES

    async def test_a_batch_of_invalid_items_is_capped_too(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        items: list[dict[str, object]] = [{"args": {}}] * 1000  # each lacks `message`
        response = await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
        assert len(assert_validation_problem(response)) == MAX_ISSUES
        assert response.json()["errors_omitted"] == 1000 - MAX_ISSUES


class TestBatchLengthInTheModel:
    """A batch over the cap is refused by its model (413, as documented), before its items."""

    async def test_45k_invalid_items_are_one_small_413(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        body = _compact({"jobs": [{"args": {}}] * 45_000})
        response = await client.post("/jobs/echo/batch", content=body, headers=JSON | auth(token))
        assert_problem(response, 413, "payload-too-large")
        assert len(response.content) < SMALL_REPLY_BYTES

    async def test_the_schema_bounds_the_batch(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()
        jobs = schema["components"]["schemas"]["EchoBatch"]["properties"]["jobs"]
        assert jobs["maxItems"] == 1000
        assert jobs["minItems"] == 1
