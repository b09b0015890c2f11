"""Values PostgreSQL refuses are the caller's problem (422), an unreachable database is ours (503).

The API refuses such values during validation (NUL characters, lone surrogates, numbers out
of range): `TestRealRoutes` sends them through the real routes. Whatever slips past
validation one day still must not answer 503 ("retry later", forever): `TestSafetyNet` makes
real PostgreSQL and asyncpg refuse values, through the real app and its error handlers, on a
route added for the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from fastapi import Body
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import create_app
from gateway.deps import ResourcesDep, SessionDep
from shared.models import Job
from shared.settings import Settings
from tests.conftest import ADMIN_TOKEN, ClientFactory
from tests.factories import auth, submit
from tests.gateway.problem_checks import assert_problem, assert_validation_problem

JSON = {"Content-Type": "application/json"}
BEYOND_BIGINT = str(2**63)
INTERNALS = (
    "Traceback",
    "sqlalchemy",
    "asyncpg",
    "SELECT",
    "CAST",
    "value out of",
    "int64",
    "invalid input",
    "0x00",
    "UTF8",
)


async def _count_jobs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Job))).scalar_one()


def _assert_clean(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    for internal in INTERNALS:
        assert internal not in response.text, internal


class TestRealRoutes:
    @pytest.mark.parametrize(
        ("path", "content"),
        [
            ("/jobs/echo", b'{"args": {"message": "a\\u0000b"}}'),
            ("/jobs/echo", b'{"args": {"message": "a"}, "options": {"labels": {"k": "\\u0000"}}}'),
            ("/jobs/echo", b'{"args": {"message": "\\ud800"}}'),
            ("/jobs/echo/batch", b'{"jobs": [{"args": {"message": "\\u0000"}}]}'),
            (
                "/jobs/echo",
                b'{"args": {"message": "a", "repeat": ' + BEYOND_BIGINT.encode() + b"}}",
            ),
            ("/jobs/sleep", b'{"args": {"seconds": 1, "steps": ' + BEYOND_BIGINT.encode() + b"}}"),
            (
                "/jobs/echo",
                b'{"args": {"message": "a"}, "options": {"max_tries": '
                + BEYOND_BIGINT.encode()
                + b"}}",
            ),
            (
                "/workflows",
                b'{"workflow": {"type": "step", "job": "echo", "args": {"message": "\\u0000"}}}',
            ),
        ],
        ids=[
            "nul-in-args",
            "nul-in-label",
            "lone-surrogate",
            "nul-in-batch",
            "int-beyond-bigint-in-args",
            "int-beyond-bigint-in-sleep-args",
            "int-beyond-bigint-in-options",
            "nul-in-workflow-step",
        ],
    )
    async def test_a_value_postgresql_would_refuse_is_422_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        path: str,
        content: bytes,
    ) -> None:
        response = await client.post(path, content=content, headers=auth(token) | JSON)
        assert response.status_code == 422, response.text  # validation-error, invalid-workflow
        assert response.json()["errors"]
        _assert_clean(response)
        assert await _count_jobs(sessionmaker) == 0

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", f"/jobs?limit={BEYOND_BIGINT}", None),
            ("GET", f"/jobs/{BEYOND_BIGINT}", None),
            ("GET", "/jobs?name=a%00b", None),
            ("PUT", "/admin/tenants/acme/limits", {"rate_limit_burst": 2**63}),
            ("PUT", "/admin/tenants/acme/limits", {"max_concurrent_jobs": 2**31}),
            ("POST", "/admin/tenants/acme/keys", {"name": "a\u0000b"}),
        ],
        ids=[
            "limit-beyond-bigint",
            "job-id-beyond-bigint",
            "nul-in-filter",
            "burst-beyond-bigint",
            "concurrency-beyond-int",
            "nul-in-key-name",
        ],
    )
    async def test_other_routes_refuse_such_values_as_422(
        self, client: httpx.AsyncClient, token: str, method: str, path: str, body: Any
    ) -> None:
        headers = auth(ADMIN_TOKEN) if path.startswith("/admin") else auth(token)
        response = await client.request(method, path, json=body, headers=headers)
        assert_validation_problem(response)
        _assert_clean(response)


async def _refused_by_postgresql(session: SessionDep, value: Annotated[str, Body()]) -> None:
    """PostgreSQL parses `value` as an integer: class-22 error for '99999999999', 'x' ..."""
    await session.execute(text("SELECT CAST(CAST(:value AS text) AS integer)"), {"value": value})


async def _refused_as_text(session: SessionDep, value: Annotated[str, Body()]) -> None:
    """A text parameter: PostgreSQL refuses NUL (22021)."""
    await session.execute(text("SELECT CAST(:value AS text)"), {"value": value})


async def _refused_by_asyncpg(session: SessionDep, value: Annotated[int, Body()]) -> None:
    """A bigint parameter: asyncpg itself refuses values beyond its range, before sending."""
    await session.execute(text("SELECT CAST(:value AS bigint)"), {"value": value})


async def _refused_on_raw_asyncpg(resources: ResourcesDep, value: Annotated[str, Body()]) -> None:
    """As `shared.jobs.submit_sql` runs statements: straight on asyncpg, no SQLAlchemy."""
    async with resources.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        await driver.fetchrow("SELECT $1::text::integer", value)


async def _stores_a_job(session: SessionDep, value: Annotated[str, Body()]) -> None:
    """Half a write, then a refused value: nothing of it may stay."""
    await session.execute(
        text("INSERT INTO tenant (id, name, webhook_secret) VALUES (gen_random_uuid(), :n, 's')"),
        {"n": "half-stored"},
    )
    await session.execute(text("SELECT CAST(CAST(:value AS text) AS integer)"), {"value": value})
    await session.commit()


@pytest.fixture
async def probe(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, with routes that hand PostgreSQL and asyncpg the values they refuse."""
    app = create_app(settings)
    routes: dict[str, Callable[..., Awaitable[None]]] = {
        "/test/postgresql": _refused_by_postgresql,
        "/test/text": _refused_as_text,
        "/test/driver": _refused_by_asyncpg,
        "/test/raw-driver": _refused_on_raw_asyncpg,
        "/test/half-write": _stores_a_job,
    }
    for path, endpoint in routes.items():
        app.add_api_route(path, endpoint, methods=["POST"], status_code=204)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as http,
    ):
        yield http


class TestSafetyNet:
    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("/test/postgresql", "99999999999"),  # 22003 numeric_value_out_of_range
            ("/test/postgresql", "twelve"),  # 22P02 invalid_text_representation
            ("/test/text", "a\u0000b"),  # 22021 character_not_in_repertoire
            ("/test/driver", 2**63),  # asyncpg: out of int64 range, never sent
            ("/test/raw-driver", "99999999999"),  # asyncpg's own DataError, no SQLAlchemy
        ],
        ids=["out-of-range", "not-a-number", "nul-in-text", "beyond-bigint", "raw-asyncpg"],
    )
    async def test_a_value_the_database_refuses_is_422_not_503(
        self, probe: httpx.AsyncClient, path: str, value: object
    ) -> None:
        response = await probe.post(path, json=value)
        body = assert_problem(response, 422, "unstorable-value")
        assert "Retry-After" not in response.headers
        assert body["detail"] == "The request holds a value the database cannot store " + (
            "(out of range, or not valid text)."
        )
        _assert_clean(response)
        # The connection was not dropped as if the database were gone: the next request works.
        assert (await probe.post("/test/postgresql", json="12")).status_code == 204

    async def test_nothing_of_the_request_is_stored(
        self, probe: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        response = await probe.post("/test/half-write", json="99999999999")
        assert_problem(response, 422, "unstorable-value")
        async with sessionmaker() as session:
            found = await session.scalar(text("SELECT count(*) FROM tenant"))
        assert found == 0

    async def test_an_unreachable_database_is_still_503(
        self, make_client: ClientFactory, settings: Settings, token: str
    ) -> None:
        nowhere = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
        client = await make_client(database_url=nowhere, db_connect_timeout_seconds=1)
        response = await client.get("/jobs", headers=auth(token))
        assert_problem(response, 503, "database-unavailable")
        assert response.headers["Retry-After"] == str(settings.retry_after_seconds)

    async def test_the_submit_route_is_unchanged_for_good_values(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "fine", "repeat": 2})
        assert job["status"] == "queued"
