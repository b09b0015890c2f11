"""`/admin/...`: tenants and API keys, for the operator token only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.conftest import ClientFactory
from tests.factories import auth, make_tenant, submit
from tests.gateway.problem_checks import assert_problem, error_locations


@pytest.fixture
def operator(settings: Settings) -> dict[str, str]:
    """The `Authorization` header carrying the operator token."""
    assert settings.admin_token is not None
    return auth(settings.admin_token.get_secret_value())


async def _create_tenant(
    client: httpx.AsyncClient, operator: dict[str, str], name: str
) -> dict[str, Any]:
    response = await client.post("/admin/tenants", json={"name": name}, headers=operator)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _create_key(
    client: httpx.AsyncClient, operator: dict[str, str], tenant: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(f"/admin/tenants/{tenant}/keys", json=body, headers=operator)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


BAD_OPERATOR_HEADERS = [
    pytest.param({}, id="no-token"),
    pytest.param(auth("wrong-token-0123456789abcdef"), id="wrong-token"),
    pytest.param(auth(""), id="empty-token"),
]


class TestCreateTenant:
    @pytest.mark.parametrize("headers", BAD_OPERATOR_HEADERS)
    async def test_without_the_operator_token_is_401(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        response = await client.post("/admin/tenants", json={"name": "acme"}, headers=headers)
        assert_problem(response, 401, "unauthenticated")

    async def test_a_tenant_api_key_is_not_the_operator_token(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await client.post(
            "/admin/tenants", json={"name": "intruder"}, headers=auth(token)
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_no_admin_api_without_a_configured_token(
        self, make_client: ClientFactory
    ) -> None:
        closed = await make_client(admin_token=None)
        response = await closed.post(
            "/admin/tenants", json={"name": "acme"}, headers=auth("anything-at-all")
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_creates_a_tenant_and_its_first_key(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        created = await _create_tenant(client, operator, "acme")
        assert set(created) == {"tenant", "api_key", "webhook_secret"}
        assert len(created["webhook_secret"]) >= 43  # secrets.token_urlsafe(32)
        assert created["tenant"]["name"] == "acme"
        uuid.UUID(created["tenant"]["id"])
        assert created["api_key"].startswith("jg_")
        # The first key has every scope: it submits and reads.
        job = await submit(client, created["api_key"], "echo", {"message": "hi"})
        read = await client.get(f"/jobs/{job['id']}", headers=auth(created["api_key"]))
        assert read.status_code == 200, read.text

    async def test_duplicate_name_is_409(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        await _create_tenant(client, operator, "acme")
        response = await client.post("/admin/tenants", json={"name": "acme"}, headers=operator)
        body = assert_problem(response, 409, "tenant-exists")
        assert "acme" in body["detail"]

    @pytest.mark.parametrize(
        "body",
        [{}, {"name": ""}, {"name": "has space"}, {"name": "x" * 101}, {"name": "a", "extra": 1}],
    )
    async def test_invalid_body_is_422(
        self, client: httpx.AsyncClient, operator: dict[str, str], body: dict[str, Any]
    ) -> None:
        response = await client.post("/admin/tenants", json=body, headers=operator)
        assert all(loc[0] == "body" for loc in error_locations(response))


class TestCreateApiKey:
    @pytest.mark.parametrize("headers", BAD_OPERATOR_HEADERS)
    async def test_without_the_operator_token_is_401(
        self, client: httpx.AsyncClient, token: str, headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/admin/tenants/acme/keys", json={"scopes": ["jobs:read"]}, headers=headers
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_unknown_tenant_is_404(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        for tenant in ["nobody", str(uuid.uuid4())]:
            response = await client.post(f"/admin/tenants/{tenant}/keys", json={}, headers=operator)
            assert_problem(response, 404, "tenant-not-found")

    async def test_creates_a_key_with_limited_scopes(
        self, client: httpx.AsyncClient, operator: dict[str, str], token: str
    ) -> None:
        created = await _create_key(
            client, operator, "acme", name="reporting", scopes=["jobs:read"]
        )
        assert set(created) == {"key", "api_key"}
        assert created["key"]["name"] == "reporting"
        assert created["key"]["scopes"] == ["jobs:read"]
        assert created["key"]["revoked_at"] is None
        reader = created["api_key"]
        assert reader.startswith("jg_") and reader != token
        job = await submit(client, token, "echo", {"message": "hi"})
        # The new key reads the tenant's jobs ...
        read = await client.get(f"/jobs/{job['id']}", headers=auth(reader))
        assert read.status_code == 200, read.text
        # ... but may not submit.
        refused = await client.post(
            "/jobs/echo", json={"args": {"message": "hi"}}, headers=auth(reader)
        )
        assert_problem(refused, 403, "forbidden")

    async def test_tenant_by_id_works_like_by_name(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        operator: dict[str, str],
    ) -> None:
        tenant_id, _ = await make_tenant(sessionmaker, "initech")
        created = await _create_key(client, operator, tenant_id, scopes=["jobs:submit"])
        assert created["key"]["tenant_id"] == tenant_id
        await submit(client, created["api_key"], "echo", {"message": "hi"})

    async def test_default_scopes_are_all_of_them(
        self, client: httpx.AsyncClient, operator: dict[str, str], token: str
    ) -> None:
        created = await _create_key(client, operator, "acme")
        assert sorted(created["key"]["scopes"]) == ["jobs:cancel", "jobs:read", "jobs:submit"]

    @pytest.mark.parametrize(
        "body", [{"scopes": []}, {"scopes": ["jobs:delete"]}, {"scopes": "jobs:read"}]
    )
    async def test_bad_scopes_are_422(
        self,
        client: httpx.AsyncClient,
        operator: dict[str, str],
        token: str,
        body: dict[str, Any],
    ) -> None:
        response = await client.post("/admin/tenants/acme/keys", json=body, headers=operator)
        assert all(loc[:2] == ["body", "scopes"] for loc in error_locations(response))


class TestRevokeApiKey:
    @pytest.mark.parametrize("headers", BAD_OPERATOR_HEADERS)
    async def test_without_the_operator_token_is_401(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        response = await client.post(f"/admin/keys/{uuid.uuid4()}/revoke", headers=headers)
        assert_problem(response, 401, "unauthenticated")

    async def test_unknown_key_is_404(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        response = await client.post(f"/admin/keys/{uuid.uuid4()}/revoke", headers=operator)
        assert_problem(response, 404, "api-key-not-found")

    async def test_revoked_key_is_refused_on_the_very_next_request(
        self, client: httpx.AsyncClient, operator: dict[str, str], token: str
    ) -> None:
        created = await _create_key(client, operator, "acme")
        doomed = created["api_key"]
        assert (await client.get("/jobs", headers=auth(doomed))).status_code == 200
        response = await client.post(f"/admin/keys/{created['key']['id']}/revoke", headers=operator)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == created["key"]["id"]
        assert response.json()["revoked_at"] is not None
        assert_problem(await client.get("/jobs", headers=auth(doomed)), 401, "unauthenticated")
        # The tenant's other keys are untouched.
        assert (await client.get("/jobs", headers=auth(token))).status_code == 200

    async def test_revoking_twice_keeps_the_first_time(
        self, client: httpx.AsyncClient, operator: dict[str, str], token: str
    ) -> None:
        created = await _create_key(client, operator, "acme")
        path = f"/admin/keys/{created['key']['id']}/revoke"
        first = await client.post(path, headers=operator)
        second = await client.post(path, headers=operator)
        assert first.status_code == second.status_code == 200
        assert first.json()["revoked_at"] == second.json()["revoked_at"]

    async def test_non_uuid_key_id_is_422(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        response = await client.post("/admin/keys/not-a-uuid/revoke", headers=operator)
        assert error_locations(response) == [["path", "key_id"]]
