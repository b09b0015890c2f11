"""API keys on every `/jobs*` route: who may call (401) and what each scope allows (403)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job
from shared.tenants import tenancy
from shared.tenants.apikeys import Scope, issue_key, parse_token
from tests.factories import auth, make_api_key, make_tenant, submit
from tests.gateway.problem_checks import assert_problem

ECHO_BODY = {"args": {"message": "hi"}}


async def _call(
    client: httpx.AsyncClient, route: str, headers: dict[str, str], job_id: str
) -> httpx.Response:
    """One of the `/jobs*` routes, as a caller would make it."""
    if route == "submit":
        return await client.post("/jobs/echo", json=ECHO_BODY, headers=headers)
    if route == "read":
        return await client.get(f"/jobs/{job_id}", headers=headers)
    return await client.get("/jobs", headers=headers)


ROUTES = ["submit", "read", "list"]


def _unknown_token() -> str:
    """Shaped exactly like a real key, but no such key was ever issued."""
    return issue_key(uuid.uuid4()).token


class TestApiKeyAuthentication:
    """`Authorization: Bearer <api-key>`: anything but a live key is 401, on every route."""

    @pytest.mark.parametrize("route", ROUTES)
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="no-header"),
            pytest.param({"Authorization": "Bearer"}, id="empty-bearer"),
            pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
            pytest.param({"Authorization": "Bearer not-a-key"}, id="malformed"),
            pytest.param({"Authorization": "Bearer jg_zz_secret"}, id="malformed-key-id"),
            pytest.param(auth(_unknown_token()), id="unknown"),
        ],
    )
    async def test_without_a_live_key_is_401(
        self, client: httpx.AsyncClient, token: str, route: str, headers: dict[str, str]
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        response = await _call(client, route, headers, job["id"])
        body = assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        assert "jg_" not in body["detail"]

    @pytest.mark.parametrize("route", ROUTES)
    async def test_right_key_id_with_wrong_secret_is_401(
        self, client: httpx.AsyncClient, token: str, route: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        parsed = parse_token(token)
        assert parsed is not None
        forged = issue_key(parsed[0]).token  # same key id, a different random secret
        response = await _call(client, route, auth(forged), job["id"])
        assert_problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize("route", ROUTES)
    async def test_revoked_key_is_401(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        route: str,
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        parsed = parse_token(token)
        assert parsed is not None
        async with sessionmaker() as session:
            await tenancy.revoke_api_key(session, key_id=parsed[0])
        response = await _call(client, route, auth(token), job["id"])
        assert_problem(response, 401, "unauthenticated")

    async def test_unauthenticated_answers_look_alike(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        """Unknown, forged and malformed keys get the same answer: no hint which part failed."""
        parsed = parse_token(token)
        assert parsed is not None
        bodies: list[dict[str, Any]] = []
        for bad in ["not-a-key", _unknown_token(), issue_key(parsed[0]).token]:
            response = await client.get("/jobs", headers=auth(bad))
            bodies.append(assert_problem(response, 401, "unauthenticated"))
        assert bodies[0] == bodies[1] == bodies[2]


class TestScopes:
    """Each key carries scopes; a route needing one the key lacks answers 403."""

    @pytest.mark.parametrize(
        ("scope", "allowed"),
        [
            (Scope.SUBMIT, {"submit"}),
            (Scope.READ, {"read", "list"}),
            (Scope.CANCEL, set()),
        ],
    )
    async def test_a_key_reaches_only_the_routes_of_its_scope(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        scope: Scope,
        allowed: set[str],
    ) -> None:
        tenant_id, full_key = await make_tenant(sessionmaker)
        job = await submit(client, full_key, "echo", {"message": "hi"})
        limited = await make_api_key(sessionmaker, tenant_id, scope)
        for route in ROUTES:
            response = await _call(client, route, auth(limited), job["id"])
            if route in allowed:
                assert response.status_code in {200, 202}, (route, response.text)
            else:
                body = assert_problem(response, 403, "forbidden")
                assert "jobs:" in body["detail"]

    async def test_scope_is_checked_before_the_job_is_looked_up(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A submit-only key learns nothing about job ids: 403 whether or not the job exists."""
        tenant_id, _ = await make_tenant(sessionmaker)
        submit_only = await make_api_key(sessionmaker, tenant_id, Scope.SUBMIT)
        job = await submit(client, submit_only, "echo", {"message": "hi"})
        for job_id in [job["id"], str(uuid.uuid4())]:
            response = await client.get(f"/jobs/{job_id}", headers=auth(submit_only))
            assert_problem(response, 403, "forbidden")


class TestSubmitWithoutAccessStoresNothing:
    """The single submit checks the key and stores the job in one statement: a refused submit
    must leave no row behind, whichever check refused it."""

    async def _job_count(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> int:
        async with sessionmaker() as session:
            count = await session.scalar(
                select(func.count()).select_from(Job).where(Job.tenant_id == uuid.UUID(tenant_id))
            )
        return int(count or 0)

    @pytest.mark.parametrize("refusal", ["forged-secret", "revoked", "read-only-scope"])
    async def test_refused_submit_stores_no_job(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        refusal: str,
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        parsed = parse_token(token)
        assert parsed is not None
        if refusal == "forged-secret":
            presented, status, code = issue_key(parsed[0]).token, 401, "unauthenticated"
        elif refusal == "revoked":
            async with sessionmaker() as session:
                await tenancy.revoke_api_key(session, key_id=parsed[0])
            presented, status, code = token, 401, "unauthenticated"
        else:
            presented = await make_api_key(sessionmaker, tenant_id, Scope.READ)
            status, code = 403, "forbidden"
        response = await client.post("/jobs/echo", json=ECHO_BODY, headers=auth(presented))
        assert_problem(response, status, code)
        assert await self._job_count(sessionmaker, tenant_id) == 0

    async def test_accepted_submit_stores_exactly_one_job(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"})
        assert await self._job_count(sessionmaker, tenant_id) == 1
        async with sessionmaker() as session:
            stored = await session.get(Job, uuid.UUID(job["id"]))
        assert stored is not None
        assert (str(stored.tenant_id), stored.name, stored.args) == (
            tenant_id,
            "echo",
            job["args"],
        )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer not-a-key"}, id="malformed"),
    ],
)
async def test_submit_without_a_usable_key_is_401_even_with_a_bad_body(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Authentication is answered first: a caller without a key learns nothing from 422s."""
    response = await client.post("/jobs/echo", json={"args": {"nope": 1}}, headers=headers)
    assert_problem(response, 401, "unauthenticated")
