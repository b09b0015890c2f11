"""PostgreSQL refusing the gateway's connections: `/readyz`, the 503 and the log name why.

Every refusal is a real server's: a role over its `CONNECTION LIMIT` (53300, as a full server's
`too many clients already`), a role that does not exist (28000), a database that does not exist
(3D000), a port nobody listens on. Roles are made per test and dropped after it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.db import libpq_url
from shared.db_errors import describe_database_error
from shared.settings import Settings
from tests.chaos.outages import database_address
from tests.conftest import ClientFactory
from tests.factories import auth
from tests.gateway.problem_checks import assert_problem
from tests.log_capture import json_lines, rendered_logs

RoleFactory = Callable[..., Awaitable[str]]
SECRET = "s3cret-never-shown"


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(libpq_url(settings.require_database_url()))
    yield connection
    await connection.close()


@pytest.fixture
async def make_role(admin: asyncpg.Connection) -> AsyncIterator[RoleFactory]:
    """Create a login role (cluster-wide, so uniquely named); drop it, and its sessions, after."""
    created: list[str] = []

    async def make(*, connection_limit: int = -1) -> str:
        name = f"jobgate_test_{uuid.uuid4().hex[:12]}"
        await admin.execute(
            f"CREATE ROLE {name} LOGIN PASSWORD '{SECRET}' CONNECTION LIMIT {connection_limit}"
        )
        created.append(name)
        return name

    yield make
    for name in created:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
        )
        await admin.execute(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
async def make_client(
    make_role: RoleFactory, make_client: ClientFactory
) -> AsyncIterator[ClientFactory]:
    """The gateways of a test, closed before its roles are dropped.

    Without this order, pytest may tear `make_role` down first: dropping a role whose session
    the gateway's pool still holds is refused ("role ... cannot be dropped because some
    objects depend on it" or an open session), a flake at teardown.
    """
    yield make_client


def _url(settings: Settings, **parts: object) -> str:
    """The test database's URL with some parts replaced (user, password, database, port)."""
    url = make_url(settings.require_database_url()).set(**parts)  # type: ignore[arg-type]
    return url.render_as_string(hide_password=False)


async def _readiness(client: httpx.AsyncClient) -> str:
    response = await client.get("/readyz")
    body = assert_problem(response, 503, "not-ready")
    assert body["checks"]["redis"] == "ok"
    assert SECRET not in response.text and "postgresql+asyncpg" not in response.text
    state: str = body["checks"]["postgresql"]
    return state


class TestReadyz:
    async def test_too_many_connections_is_named(
        self, make_client: ClientFactory, make_role: RoleFactory, settings: Settings
    ) -> None:
        role = await make_role(connection_limit=1)
        url = _url(settings, username=role, password=SECRET)
        holder = await asyncpg.connect(libpq_url(url))  # the role's one connection
        try:
            client = await make_client(database_url=url)
            state = await _readiness(client)
        finally:
            await holder.close()
        assert state == "down: too many connections (SQLSTATE 53300)"

    async def test_an_unknown_role_is_an_authentication_failure(
        self, make_client: ClientFactory, settings: Settings
    ) -> None:
        url = _url(settings, username=f"nobody_{uuid.uuid4().hex[:8]}", password=SECRET)
        client = await make_client(database_url=url)
        assert await _readiness(client) == "down: authentication failed (SQLSTATE 28000)"

    async def test_a_missing_database_is_named(
        self, make_client: ClientFactory, settings: Settings
    ) -> None:
        url = _url(settings, database=f"missing_{uuid.uuid4().hex[:8]}")
        client = await make_client(database_url=url)
        assert await _readiness(client) == "down: database does not exist (SQLSTATE 3D000)"

    async def test_a_refused_connection_is_named(
        self, make_client: ClientFactory, settings: Settings
    ) -> None:
        url = _url(settings, port=1)
        client = await make_client(database_url=url)
        # Nobody listens on port 1: TCP is refused; a unix socket's file is not there at all.
        unix = isinstance(database_address(url), Path)
        expected = "no server at the socket" if unix else "connection refused"
        assert await _readiness(client) == f"down: {expected}"


class TestRequests:
    async def test_a_submit_refused_a_connection_says_why_and_logs_it(
        self,
        make_client: ClientFactory,
        make_role: RoleFactory,
        settings: Settings,
        token: str,
    ) -> None:
        role = await make_role(connection_limit=1)
        url = _url(settings, username=role, password=SECRET)
        holder = await asyncpg.connect(libpq_url(url))
        try:
            client = await make_client(database_url=url, log_json=True)
            with rendered_logs() as logs:
                response = await client.post(
                    "/jobs/echo", json={"args": {"message": "hi", "repeat": 1}}, headers=auth(token)
                )
        finally:
            await holder.close()
        body = assert_problem(response, 503, "database-unavailable")
        assert body["detail"] == (
            "PostgreSQL is unavailable: too many connections (SQLSTATE 53300); try again shortly."
        )
        assert response.headers["Retry-After"] == str(settings.retry_after_seconds)
        (line,) = [line for line in json_lines(logs) if line["event"] == "dependency.unavailable"]
        assert line["cause"] == "too many connections (SQLSTATE 53300)"
        assert SECRET not in logs.getvalue() and role not in logs.getvalue()


class TestDescriptions:
    """The causes a test server cannot be made to give (it trusts every local login)."""

    @pytest.mark.parametrize(
        ("error", "cause"),
        [
            (asyncpg.InvalidPasswordError("x"), "authentication failed (SQLSTATE 28P01)"),
            (asyncpg.CannotConnectNowError("x"), "server is starting up or shutting down"),
            (asyncpg.UndefinedTableError("x"), "UndefinedTableError (SQLSTATE 42P01)"),
            (PoolTimeout("x"), "connection pool exhausted"),
            (TimeoutError(), "timed out"),
            (ConnectionResetError(), "ConnectionResetError"),
        ],
    )
    def test_each_cause(self, error: BaseException, cause: str) -> None:
        assert describe_database_error(error).startswith(cause)

    def test_the_cause_is_found_under_the_wrappers(self) -> None:
        try:
            try:
                raise asyncpg.TooManyConnectionsError("sorry, too many clients already")
            except asyncpg.TooManyConnectionsError as inner:
                raise RuntimeError("wrapped") from inner
        except RuntimeError as outer:
            assert describe_database_error(outer) == "too many connections (SQLSTATE 53300)"
