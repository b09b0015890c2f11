"""Hostile and odd input: each gets a clear problem+json answer, leaks nothing, stores nothing.

Body size (413), media type (415), malformed JSON and NUL characters are in test_problems.py and
test_submit.py; this module covers what a fuzzer or a careless client sends next.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job
from shared.settings import Settings
from tests.factories import auth, submit
from tests.gateway.problem_checks import assert_problem, assert_validation_problem

JSON = {"Content-Type": "application/json"}
INTERNALS = (
    "Traceback",
    'File "',
    "site-packages",
    "RecursionError",
    "UnicodeDecodeError",
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "SELECT ",
    "127.0.0.1",
)


async def _count_jobs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Job))).scalar_one()


def _assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A problem answer that names the problem and nothing of the server's insides."""
    body = assert_problem(response, status, code)
    for internal in INTERNALS:
        assert internal not in response.text, internal
    return body


def _operator(settings: Settings) -> dict[str, str]:
    assert settings.admin_token is not None
    return auth(settings.admin_token.get_secret_value())


class TestDeepNesting:
    """Python's json parser recurses per level: deep nesting must be a 400, never a 500."""

    @pytest.mark.parametrize(
        "content",
        [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"args": {"message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
            b'{"args": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
            b"[" * 1_000_000,
        ],
        ids=["arrays", "arrays-in-args", "objects", "unterminated-1MB"],
    )
    @pytest.mark.parametrize("path", ["/jobs/echo", "/jobs/echo/batch"])
    async def test_deep_nesting_is_400_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        content: bytes,
        path: str,
    ) -> None:
        response = await client.post(path, content=content, headers={**auth(token), **JSON})
        body = _assert_refused(response, 400, "malformed-json")
        assert "deep" in body["detail"]
        assert await _count_jobs(sessionmaker) == 0

    async def test_deep_nesting_on_an_admin_route_is_400(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        content = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        response = await client.post(
            "/admin/tenants", content=content, headers={**_operator(settings), **JSON}
        )
        _assert_refused(response, 400, "malformed-json")

    async def test_nesting_the_parser_handles_reaches_validation(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        content = b'{"args": {"message": ' + b"[" * 500 + b"]" * 500 + b"}}"
        response = await client.post("/jobs/echo", content=content, headers={**auth(token), **JSON})
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["body", "args", "message"]]


class TestInvalidUnicode:
    @pytest.mark.parametrize(
        "content",
        [
            b'{"args": {"message": "caf\xe9"}}',
            b'{"args": {"message": "cut \xc3"}}',
            b'{"args": {"message": "hi"}, "\xff": 1}',
            b'{"args": {"message": "over\xf8\x88\x80\x80\x80long"}}',
        ],
        ids=["latin-1", "truncated-sequence", "in-a-key", "five-byte-sequence"],
    )
    async def test_invalid_utf8_is_400_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        content: bytes,
    ) -> None:
        response = await client.post("/jobs/echo", content=content, headers={**auth(token), **JSON})
        body = _assert_refused(response, 400, "malformed-json")
        assert "UTF-8" in body["detail"]
        assert await _count_jobs(sessionmaker) == 0

    @pytest.mark.parametrize(
        ("content", "loc"),
        [
            (b'{"args": {"message": "\\ud800"}}', ["body", "args", "message"]),
            (b'{"args": {"message": "\xed\xa0\x80"}}', ["body", "args", "message"]),
            (
                b'{"args": {"message": "hi"}, "options": {"labels": {"k": "\\udfff"}}}',
                ["body", "options", "labels", "k"],
            ),
        ],
        ids=["escaped-lone-surrogate", "utf8-encoded-surrogate", "surrogate-in-label"],
    )
    async def test_lone_surrogates_are_422_and_store_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        content: bytes,
        loc: list[str],
    ) -> None:
        """Not text PostgreSQL can store; refused by validation, not by a database error."""
        response = await client.post("/jobs/echo", content=content, headers={**auth(token), **JSON})
        issues = assert_validation_problem(response)
        assert loc in [issue["loc"] for issue in issues]
        assert await _count_jobs(sessionmaker) == 0


class TestBodyShape:
    @pytest.mark.parametrize("content", [b'"hi"', b"null", b"42", b"true", b"[]"])
    @pytest.mark.parametrize("path", ["/jobs/echo", "/jobs/echo/batch"])
    async def test_a_body_that_is_not_an_object_is_422(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        content: bytes,
        path: str,
    ) -> None:
        response = await client.post(path, content=content, headers={**auth(token), **JSON})
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["body"]]
        assert await _count_jobs(sessionmaker) == 0

    @pytest.mark.parametrize("args", ["hi", None, [], 1, [{"message": "hi"}]])
    async def test_args_that_are_not_an_object_are_422(
        self, client: httpx.AsyncClient, token: str, args: Any
    ) -> None:
        response = await client.post("/jobs/echo", json={"args": args}, headers=auth(token))
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["body", "args"]]

    @pytest.mark.parametrize("options", ["fast", None, [], 0])
    async def test_options_that_are_not_an_object_are_422(
        self, client: httpx.AsyncClient, token: str, options: Any
    ) -> None:
        body = {"args": {"message": "hi"}, "options": options}
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["body", "options"]]


class TestHugeStrings:
    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"args": {"message": "x" * 10_001}}, ["body", "args", "message"]),
            ({"args": {"message": "x" * 1_000_000}}, ["body", "args", "message"]),
            (
                {"args": {"message": "hi"}, "options": {"labels": {"k": "x" * 257}}},
                ["body", "options", "labels", "k"],
            ),
            (
                {"args": {"message": "hi"}, "options": {"labels": {"k" * 65: "v"}}},
                ["body", "options", "labels", "k" * 65, "[key]"],
            ),
            (
                {
                    "args": {"message": "hi"},
                    "options": {"webhook_url": "https://a.test/" + "x" * 2100},
                },
                ["body", "options", "webhook_url"],
            ),
        ],
        ids=["message-over-limit", "message-of-1MB", "label-value", "label-key", "webhook-url"],
    )
    async def test_strings_over_their_limit_are_422_not_echoed_and_not_stored(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        body: dict[str, Any],
        loc: list[str],
    ) -> None:
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        issues = assert_validation_problem(response)
        assert loc in [issue["loc"] for issue in issues]
        assert "x" * 100 not in response.text
        assert len(response.content) < 2000
        assert await _count_jobs(sessionmaker) == 0

    async def test_a_huge_unknown_field_name_is_not_echoed(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        """Field names land in `loc`; a megabyte-long one is cut, not sent back whole."""
        body = {"args": {"message": "hi", "y" * 500_000: 1}}
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        (issue,) = assert_validation_problem(response)
        assert issue["type"] == "extra_forbidden"
        assert issue["loc"][:2] == ["body", "args"]
        assert len(response.content) < 2000

    async def test_an_idempotency_key_over_255_characters_is_422(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}},
            headers={**auth(token), "Idempotency-Key": "k" * 256},
        )
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["header", "Idempotency-Key"]]

    async def test_a_tenant_name_over_100_characters_is_422(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        response = await client.post(
            "/admin/tenants", json={"name": "t" * 101}, headers=_operator(settings)
        )
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["body", "name"]]


class TestUnknownFields:
    """Policy: every request model forbids unknown fields (`extra="forbid"`), answering 422.

    Single submits are covered in test_submit.py; batches and admin bodies are here.
    """

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"jobs": [{"args": {"message": "hi"}}], "atomic": False}, ["body", "atomic"]),
            ({"jobs": [{"args": {"message": "hi"}, "extra": 1}]}, ["body", "jobs", 0, "extra"]),
            (
                {"jobs": [{"args": {"message": "hi", "colour": "red"}}]},
                ["body", "jobs", 0, "args", "colour"],
            ),
            (
                {"jobs": [{"args": {"message": "hi"}, "options": {"retries": 2}}]},
                ["body", "jobs", 0, "options", "retries"],
            ),
        ],
        ids=["top-level", "item", "item-args", "item-options"],
    )
    async def test_batch_rejects_unknown_fields(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        body: dict[str, Any],
        loc: list[str | int],
    ) -> None:
        response = await client.post("/jobs/echo/batch", json=body, headers=auth(token))
        issues = assert_validation_problem(response)
        assert [(issue["loc"], issue["type"]) for issue in issues] == [(loc, "extra_forbidden")]
        assert await _count_jobs(sessionmaker) == 0

    @pytest.mark.parametrize(
        ("path", "body", "loc"),
        [
            ("/admin/tenants", {"name": "acme", "plan": "gold"}, ["body", "plan"]),
            (
                "/admin/tenants/acme/keys",
                {"scopes": ["jobs:read"], "admin": True},
                ["body", "admin"],
            ),
        ],
        ids=["tenant", "key"],
    )
    async def test_admin_bodies_reject_unknown_fields(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        token: str,
        path: str,
        body: dict[str, Any],
        loc: list[str],
    ) -> None:
        response = await client.post(path, json=body, headers=_operator(settings))
        issues = assert_validation_problem(response)
        assert [(issue["loc"], issue["type"]) for issue in issues] == [(loc, "extra_forbidden")]


class TestNumbers:
    """Python's json reads NaN, Infinity and 1e400 (as inf); none may reach a job."""

    @pytest.mark.parametrize(
        ("content", "loc"),
        [
            (b'{"args": {"seconds": NaN}}', ["body", "args", "seconds"]),
            (b'{"args": {"seconds": Infinity}}', ["body", "args", "seconds"]),
            (b'{"args": {"seconds": -Infinity}}', ["body", "args", "seconds"]),
            (b'{"args": {"seconds": 1e400}}', ["body", "args", "seconds"]),
            (b'{"args": {"seconds": 1, "steps": 1e400}}', ["body", "args", "steps"]),
            (b'{"args": {"seconds": 1, "steps": NaN}}', ["body", "args", "steps"]),
            (b'{"args": {"seconds": 1, "steps": 1' + b"0" * 400 + b"}}", ["body", "args", "steps"]),
            (
                b'{"args": {"seconds": 1}, "options": {"delay_seconds": NaN}}',
                ["body", "options", "delay_seconds"],
            ),
            (
                b'{"args": {"seconds": 1}, "options": {"timeout_seconds": NaN}}',
                ["body", "options", "timeout_seconds"],
            ),
            (
                b'{"args": {"seconds": 1}, "options": {"timeout_seconds": Infinity}}',
                ["body", "options", "timeout_seconds"],
            ),
            (
                b'{"args": {"seconds": 1}, "options": {"max_tries": 1e400}}',
                ["body", "options", "max_tries"],
            ),
        ],
        ids=[
            "nan",
            "infinity",
            "minus-infinity",
            "1e400",
            "int-1e400",
            "int-nan",
            "int-401-digits",
            "delay-nan",
            "timeout-nan",
            "timeout-infinity",
            "max-tries-1e400",
        ],
    )
    async def test_non_finite_and_huge_numbers_are_422_and_store_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        content: bytes,
        loc: list[str],
    ) -> None:
        response = await client.post(
            "/jobs/sleep", content=content, headers={**auth(token), **JSON}
        )
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [loc]
        assert await _count_jobs(sessionmaker) == 0

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("delay_seconds", True),
            ("delay_seconds", "30"),
            ("timeout_seconds", False),
            ("timeout_seconds", "60"),
            ("max_tries", True),
            ("max_tries", "3"),
            ("max_tries", 2.5),
        ],
    )
    async def test_options_take_json_numbers_not_booleans_or_text(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        option: str,
        value: object,
    ) -> None:
        """Lax pydantic would read `true` as 1 and `"30"` as 30; the schema says number."""
        body = {"args": {"seconds": 1}, "options": {option: value}}
        for path in ("/jobs/sleep", "/jobs/sleep/batch"):
            sent = body if path == "/jobs/sleep" else {"jobs": [body]}
            response = await client.post(path, json=sent, headers=auth(token))
            (issue,) = assert_validation_problem(response)
            assert issue["loc"][-2:] == ["options", option]
        assert await _count_jobs(sessionmaker) == 0

    async def test_whole_numbers_are_numbers_of_seconds(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        options = {"delay_seconds": 30, "timeout_seconds": 60, "max_tries": 2}
        job = await submit(client, token, "sleep", {"seconds": 1}, options)
        assert (job["status"], job["max_tries"]) == ("scheduled", 2)

    async def test_an_integer_too_long_to_parse_is_400(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
    ) -> None:
        """Python refuses to read integers of over 4300 digits (CVE-2020-10735)."""
        content = b'{"args": {"seconds": 1, "steps": ' + b"9" * 5000 + b"}}"
        response = await client.post(
            "/jobs/sleep", content=content, headers={**auth(token), **JSON}
        )
        _assert_refused(response, 400, "malformed-json")
        assert "9" * 100 not in response.text
        assert await _count_jobs(sessionmaker) == 0


class TestDuplicateKeys:
    """RFC 8259 leaves repeated member names open; jobgate keeps the last, as JSON.parse does."""

    async def test_the_last_of_repeated_keys_wins(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        content = b'{"args": {"message": "first", "message": "last"}}'
        response = await client.post("/jobs/echo", content=content, headers={**auth(token), **JSON})
        assert response.status_code == 202, response.text
        assert response.json()["args"]["message"] == "last"

    async def test_a_repeated_args_member_is_replaced_whole(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], token: str
    ) -> None:
        content = b'{"args": {"message": "hi"}, "args": {"repeat": 2}}'
        response = await client.post("/jobs/echo", content=content, headers={**auth(token), **JSON})
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["body", "args", "message"]]
        assert await _count_jobs(sessionmaker) == 0


class TestHeaderAbuse:
    @pytest.mark.parametrize(
        "authorization",
        [
            # Long, yet within the head limit (16 KiB; beyond it: 431, test_header_limits.py).
            b"Bearer " + b"a" * 12_000,
            b"Bearer jg_" + b"0" * 32 + b"_" + b"s" * 12_000,
            b"Bearer jg_" + b"0" * 32 + b"_s\xc3\xbc\xff",
            b"Bearer \xc3\xbc\xc3\xbc",
            b"\xff\xfe\xfd",
        ],
        ids=["long", "key-shaped-long", "non-ascii-secret", "non-ascii", "binary"],
    )
    @pytest.mark.parametrize("path", ["/jobs", "/jobs/00000000-0000-4000-8000-000000000001"])
    async def test_odd_authorization_is_401(
        self, client: httpx.AsyncClient, token: str, authorization: bytes, path: str
    ) -> None:
        response = await client.get(path, headers={b"Authorization": authorization})
        body = _assert_refused(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        assert len(response.content) < 1000
        assert "aaaa" not in body["detail"]

    @pytest.mark.parametrize(
        "authorization",
        [b"Bearer " + b"a" * 12_000, b"Bearer \xc3\xbc\xc3\xbc", b"\xff\xfe\xfd"],
        ids=["long", "non-ascii", "binary"],
    )
    async def test_odd_operator_token_is_401(
        self, client: httpx.AsyncClient, authorization: bytes
    ) -> None:
        response = await client.post(
            "/admin/tenants", json={"name": "acme"}, headers={b"Authorization": authorization}
        )
        _assert_refused(response, 401, "unauthenticated")

    async def test_many_headers_do_not_get_in_the_way(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        # As many as the limits allow (100 fields, 16 KiB); beyond: 431, test_header_limits.py.
        many = [(f"X-Filler-{i}", "v" * 100) for i in range(90)]
        response = await client.get("/jobs", headers=[*many, ("Authorization", f"Bearer {token}")])
        assert response.status_code == 200, response.text
        response = await client.get("/jobs", headers=many)
        _assert_refused(response, 401, "unauthenticated")

    @pytest.mark.parametrize(
        "sent",
        [
            "req-\u00fc".encode(),
            b"\xff\xfe",
            "\u0661\u0662\u0663".encode(),
            b"abc\xa0def",
            "\u00e9t\u00e9".encode("latin-1"),
        ],
        ids=["utf8-umlaut", "binary", "arabic-digits", "latin-1-nbsp", "latin-1-letters"],
    )
    async def test_non_ascii_request_id_is_replaced(
        self, client: httpx.AsyncClient, token: str, sent: bytes
    ) -> None:
        response = await client.get("/jobs", headers={b"X-Request-ID": sent})
        _assert_refused(response, 401, "unauthenticated")
        replaced = response.headers["x-request-id"]
        assert replaced.isascii() and replaced.isalnum()
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}},
            headers={b"Authorization": f"Bearer {token}".encode(), b"X-Request-ID": sent},
        )
        assert response.status_code == 202, response.text
        assert response.headers["x-request-id"].isascii()

    async def test_non_ascii_idempotency_key_is_replayed_like_any_other(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        headers = {
            b"Authorization": f"Bearer {token}".encode(),
            b"Idempotency-Key": "k\u00fc".encode(),
        }
        first = await client.post("/jobs/echo", json={"args": {"message": "hi"}}, headers=headers)
        again = await client.post("/jobs/echo", json={"args": {"message": "hi"}}, headers=headers)
        assert (first.status_code, again.status_code) == (202, 200), again.text
        assert first.json()["id"] == again.json()["id"]


class TestQueryAbuse:
    @pytest.mark.parametrize("wait", ["nan", "NaN", "inf", "-inf", "1e400", "0x10", ""])
    async def test_non_finite_wait_is_422(
        self, client: httpx.AsyncClient, token: str, wait: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        response = await client.get(f"/jobs/{job['id']}?wait={wait}", headers=auth(token))
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["query", "wait"]]

    @pytest.mark.parametrize("limit", ["1e9", "1000000000", "9" * 400, "nan", "1.5", "-1"])
    async def test_odd_limit_is_422(
        self, client: httpx.AsyncClient, token: str, limit: str
    ) -> None:
        response = await client.get(f"/jobs?limit={limit}", headers=auth(token))
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [["query", "limit"]]

    async def test_a_repeated_single_value_parameter_takes_the_last(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        for _ in range(3):
            await submit(client, token, "echo", {"message": "hi"})
        response = await client.get("/jobs?limit=5&limit=1", headers=auth(token))
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 1
        response = await client.get("/jobs?limit=1&limit=500", headers=auth(token))
        assert_validation_problem(response)

    @pytest.mark.parametrize(
        ("query", "loc"),
        [
            ("&".join(["name=echo"] * 51), ["query", "name"]),
            ("&".join(f"name=n{i}" for i in range(1000)), ["query", "name"]),  # 16 KiB head
            ("&".join(["status=queued"] * 51), ["query", "status"]),
            ("&".join(f"label=k{i}:v" for i in range(51)), ["query", "label"]),
            ("name=" + "n" * 513, ["query", "name", 0]),
        ],
        ids=["51-names", "1000-names", "51-statuses", "51-labels", "long-name"],
    )
    async def test_too_many_or_too_long_filter_values_are_422(
        self, client: httpx.AsyncClient, token: str, query: str, loc: list[str | int]
    ) -> None:
        """Each value is a query parameter for PostgreSQL (asyncpg allows 32 767): bounded."""
        response = await client.get(f"/jobs?{query}", headers=auth(token))
        issues = assert_validation_problem(response)
        assert [issue["loc"] for issue in issues] == [loc]
        assert len(response.content) < 2000

    async def test_fifty_filter_values_are_fine(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        await submit(client, token, "echo", {"message": "hi"})
        names = "&".join(f"name=n{i}" for i in range(49))
        response = await client.get(f"/jobs?{names}&name=echo", headers=auth(token))
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 1

    @pytest.mark.parametrize(
        "params",
        [
            {"name": "echo\x00"},
            {"label": "k:v\x00"},
            {"label": "k\x00:v"},
            {"created_after": "0001-01-01T00:00:00+01:00"},
            {"created_before": "9999-12-31T23:59:59-01:00"},
            {"created_before": "0000-12-31T23:59:59Z"},
        ],
        ids=[
            "nul-in-name",
            "nul-in-label-value",
            "nul-in-label-key",
            "before-year-1-in-utc",
            "after-9999-in-utc",
            "year-0",
        ],
    )
    async def test_filters_the_database_cannot_take_are_422(
        self, client: httpx.AsyncClient, token: str, params: dict[str, str]
    ) -> None:
        response = await client.get("/jobs", params=params, headers=auth(token))
        issues = assert_validation_problem(response)
        assert [issue["loc"][:2] for issue in issues] == [["query", next(iter(params))]]
        for internal in INTERNALS:
            assert internal not in response.text


def test_the_nesting_case_really_is_deeper_than_the_parser_goes() -> None:
    with pytest.raises(RecursionError):
        json.loads(b"[" * 100_000 + b"]" * 100_000)
