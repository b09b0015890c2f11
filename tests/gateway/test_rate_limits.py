"""Per-tenant submit rate limits: `429` with `Retry-After` and `RateLimit-*`, set by operators."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from cli.main import app
from shared.settings import Settings, get_settings
from shared.tenants import tenancy
from tests.conftest import ClientFactory
from tests.factories import auth, make_tenant, set_tenant_limits, submit, wait_for_status
from tests.gateway.problem_checks import assert_problem, error_locations

FAILING = {"fail_times": 1, "permanent": True}
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture
def operator(settings: Settings) -> dict[str, str]:
    """The `Authorization` header carrying the operator token."""
    assert settings.admin_token is not None
    return auth(settings.admin_token.get_secret_value())


async def _echo(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/jobs/echo", json={"args": {"message": "x"}}, headers=auth(token))


async def _batch(client: httpx.AsyncClient, token: str, size: int) -> httpx.Response:
    items = [{"args": {"message": str(i)}} for i in range(size)]
    return await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))


async def _stored(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/jobs", params={"limit": 200}, headers=auth(token))
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


def _rate_headers(response: httpx.Response) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in RATE_HEADERS)
    return limit, remaining, reset


class TestSetLimits:
    @pytest.mark.parametrize(
        "headers",
        [pytest.param({}, id="no-token"), pytest.param(auth("wrong-" * 5), id="wrong-token")],
    )
    async def test_without_the_operator_token_is_401(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        headers: dict[str, str],
    ) -> None:
        await make_tenant(sessionmaker)
        response = await client.put(
            "/admin/tenants/acme/limits", json={"rate_limit_per_second": 1}, headers=headers
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_a_tenant_key_is_not_the_operator_token(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await client.put(
            "/admin/tenants/acme/limits", json={"rate_limit_burst": 1000}, headers=auth(token)
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_unknown_tenant_is_404(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        response = await client.put("/admin/tenants/nobody/limits", json={}, headers=operator)
        assert_problem(response, 404, "tenant-not-found")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"rate_limit_per_second": 0}, "rate_limit_per_second"),
            ({"rate_limit_burst": 0}, "rate_limit_burst"),
            ({"max_concurrent_jobs": -1}, "max_concurrent_jobs"),
            ({"rate": 5}, "rate"),
        ],
    )
    @pytest.mark.usefixtures("token")
    async def test_invalid_limits_are_422(
        self,
        client: httpx.AsyncClient,
        operator: dict[str, str],
        body: dict[str, Any],
        field: str,
    ) -> None:
        response = await client.put("/admin/tenants/acme/limits", json=body, headers=operator)
        assert ["body", field] in error_locations(response)

    async def test_sets_then_clears_a_tenants_limits(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        operator: dict[str, str],
    ) -> None:
        tenant_id, _ = await make_tenant(sessionmaker)
        wanted = {"rate_limit_per_second": 2.5, "rate_limit_burst": 10, "max_concurrent_jobs": 3}
        response = await client.put(
            f"/admin/tenants/{tenant_id}/limits", json=wanted, headers=operator
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["tenant"]["name"] == "acme"
        assert {key: body[key] for key in wanted} == wanted
        # PUT replaces all three: what is left out goes back to the configured default.
        cleared = await client.put(
            "/admin/tenants/acme/limits", json={"rate_limit_burst": 4}, headers=operator
        )
        assert cleared.json()["rate_limit_burst"] == 4
        assert cleared.json()["rate_limit_per_second"] is None
        assert cleared.json()["max_concurrent_jobs"] is None


class TestSubmitRateLimit:
    async def test_an_unlimited_tenant_gets_no_rate_headers(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await _echo(client, token)
        assert response.status_code == 202
        assert not set(RATE_HEADERS) & set(response.headers)

    async def test_429_once_the_burst_is_spent_and_nothing_stored(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        operator: dict[str, str],
        token: str,
    ) -> None:
        limits = {"rate_limit_per_second": 0.5, "rate_limit_burst": 3}
        await client.put("/admin/tenants/acme/limits", json=limits, headers=operator)
        remaining = []
        for _ in range(3):
            response = await _echo(client, token)
            assert response.status_code == 202, response.text
            limit, left, reset = _rate_headers(response)
            assert limit == 3 and reset >= 1
            remaining.append(left)
        assert remaining == [2, 1, 0]
        refused = await _echo(client, token)
        body = assert_problem(refused, 429, "rate-limited")
        assert "0.5 jobs per second" in body["detail"]
        assert refused.headers["retry-after"] == "2"  # one token every 2 s
        limit, left, reset = _rate_headers(refused)
        assert (limit, left) == (3, 0)
        assert 5 <= reset <= 6  # three tokens to refill at 0.5/s
        assert await _stored(client, token) == 3

    async def test_recovers_after_retry_after(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
    ) -> None:
        tenant_id = await _tenant_id(sessionmaker, "acme")
        await set_tenant_limits(
            sessionmaker, tenant_id, rate_limit_per_second=2.0, rate_limit_burst=1
        )
        assert (await _echo(client, token)).status_code == 202
        refused = await _echo(client, token)
        assert refused.status_code == 429
        retry_after = int(refused.headers["retry-after"])
        assert retry_after == 1
        # What a well-behaved caller does: wait as told, then try again.
        await asyncio.sleep(retry_after)
        again = await _echo(client, token)
        assert again.status_code == 202, again.text

    async def test_a_batch_takes_one_token_per_job(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        operator: dict[str, str],
        token: str,
    ) -> None:
        limits = {"rate_limit_per_second": 0.2, "rate_limit_burst": 10}
        await client.put("/admin/tenants/acme/limits", json=limits, headers=operator)
        first = await _batch(client, token, 4)
        assert first.status_code == 202
        assert _rate_headers(first)[1] == 6
        too_many = await _batch(client, token, 7)
        assert_problem(too_many, 429, "rate-limited")
        assert _rate_headers(too_many)[1] == 6  # a refused batch takes nothing
        assert too_many.headers["retry-after"] == "5"  # one more token at 0.2/s
        rest = await _batch(client, token, 6)
        assert rest.status_code == 202, rest.text
        assert _rate_headers(rest)[1] == 0
        assert await _stored(client, token) == 10

    async def test_a_batch_bigger_than_the_burst_needs_a_full_bucket_and_leaves_debt(
        self,
        client: httpx.AsyncClient,
        operator: dict[str, str],
        token: str,
    ) -> None:
        limits = {"rate_limit_per_second": 1, "rate_limit_burst": 5}
        await client.put("/admin/tenants/acme/limits", json=limits, headers=operator)
        big = await _batch(client, token, 8)
        assert big.status_code == 202, big.text
        assert _rate_headers(big)[1] == 0
        refused = await _echo(client, token)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "4"  # 3 tokens of debt, then 1 to take

    async def test_another_tenant_is_unaffected(
        self,
        client: httpx.AsyncClient,
        operator: dict[str, str],
        token: str,
        other_token: str,
    ) -> None:
        limits = {"rate_limit_per_second": 0.1, "rate_limit_burst": 1}
        for tenant in ("acme", "globex"):
            await client.put(f"/admin/tenants/{tenant}/limits", json=limits, headers=operator)
        assert (await _echo(client, token)).status_code == 202
        assert (await _echo(client, token)).status_code == 429
        theirs = await _echo(client, other_token)
        assert theirs.status_code == 202, theirs.text
        assert _rate_headers(theirs)[:2] == (1, 0)

    async def test_the_configured_default_applies_and_a_tenants_own_wins(
        self,
        make_client: ClientFactory,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        other_token: str,
    ) -> None:
        limited = await make_client(rate_limit_per_second=0.1, rate_limit_burst=2)
        globex = await _tenant_id(sessionmaker, "globex")
        await set_tenant_limits(sessionmaker, globex, rate_limit_burst=5)
        statuses = [(await _echo(limited, token)).status_code for _ in range(3)]
        assert statuses == [202, 202, 429]
        statuses = [(await _echo(limited, other_token)).status_code for _ in range(6)]
        assert statuses == [202] * 5 + [429]


async def _tenant_id(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> str:
    async with sessionmaker() as session:
        return str((await tenancy.find_tenant(session, tenant=name)).id)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point `get_settings()` (what the CLI reads) at the test database and Redis."""
    monkeypatch.setenv("JOBGATE_DATABASE_URL", settings.require_database_url())
    monkeypatch.setenv("JOBGATE_REDIS_URL", settings.require_redis_url())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def jobgate(*args: str) -> Result:
    """Run a `jobgate` command (in a thread: the CLI runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


class TestReRunsSpendTokens:
    """A re-run creates a job for the tenant: it spends a token like a submit."""

    async def test_an_empty_bucket_refuses_a_re_run_and_creates_nothing(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], token: str
    ) -> None:
        cancelled = [await _cancelled_job(client, token) for _ in range(3)]
        await set_tenant_limits(
            sessionmaker, "acme", rate_limit_per_second=0.01, rate_limit_burst=1
        )
        first = await client.post(f"/jobs/{cancelled[0]}/retry", headers=auth(token))
        assert first.status_code == 201, first.text
        for job_id in cancelled[1:]:
            refused = await client.post(f"/jobs/{job_id}/retry", headers=auth(token))
            body = assert_problem(refused, 429, "rate-limited")
            assert "jobs per second" in body["detail"]
            assert int(refused.headers["retry-after"]) >= 1
            assert _rate_headers(refused)[:2] == (1, 0)
            old = (await client.get(f"/jobs/{job_id}", headers=auth(token))).json()
            assert old["retried_by"] is None
        assert await _stored(client, token) == 4  # three cancelled, one re-run
        assert_problem(await _echo(client, token), 429, "rate-limited")

    async def test_a_workflow_retry_spends_a_token_per_re_run_step(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        worker: Worker,
    ) -> None:
        definition = {
            "type": "group",
            "steps": [
                {"type": "step", "job": "flaky", "args": FAILING},
                {"type": "step", "job": "flaky", "args": FAILING},
            ],
        }
        submitted = await client.post(
            "/workflows", json={"workflow": definition}, headers=auth(token)
        )
        assert submitted.status_code == 202, submitted.text
        url = f"/workflows/{submitted.json()['id']}"
        for step in submitted.json()["steps"]:
            await wait_for_status(client, token, step["job"]["id"], "failed")
        await set_tenant_limits(
            sessionmaker, "acme", rate_limit_per_second=0.01, rate_limit_burst=3
        )
        for _ in range(2):  # one token left, the retry needs two
            assert (await _echo(client, token)).status_code == 202
        stored = await _stored(client, token)
        refused = await client.post(f"{url}/retry", headers=auth(token))
        assert_problem(refused, 429, "rate-limited")
        assert (await client.get(url, headers=auth(token))).json()["status"] == "failed"
        assert await _stored(client, token) == stored


async def _cancelled_job(client: httpx.AsyncClient, token: str) -> str:
    job = await submit(client, token, "echo", {"message": "later"}, {"delay_seconds": 600})
    response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.text
    return str(job["id"])


@pytest.mark.usefixtures("cli_env")
class TestLimitsCommand:
    async def test_unknown_tenant_is_a_clear_error(self) -> None:
        result = await jobgate("tenants", "limits", "nobody", "--rate", "1")
        assert result.exit_code == 1
        assert "No tenant 'nobody'" in result.output

    async def test_sets_only_what_is_given_and_clears_on_request(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await make_tenant(sessionmaker)
        result = await jobgate("tenants", "limits", "acme", "--rate", "5", "--burst", "10")
        assert result.exit_code == 0, result.output
        assert "rate 5/s, burst 10, concurrency default" in result.output
        result = await jobgate("tenants", "limits", "acme", "--concurrency", "3")
        assert "rate 5/s, burst 10, concurrency 3" in result.output
        async with sessionmaker() as session:
            stored = tenancy.TenantLimits.of(await tenancy.find_tenant(session, tenant="acme"))
        assert stored == tenancy.TenantLimits(5.0, 10, 3)
        result = await jobgate("tenants", "limits", "acme", "--clear", "--burst", "2")
        assert "rate default, burst 2, concurrency default" in result.output

    async def test_a_limit_set_from_the_command_line_limits_submits(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        result = await jobgate("tenants", "limits", "acme", "--rate", "0.1", "--burst", "1")
        assert result.exit_code == 0, result.output
        assert (await _echo(client, token)).status_code == 202
        assert_problem(await _echo(client, token), 429, "rate-limited")

    async def test_rejects_a_zero_quota(self) -> None:
        result = await jobgate("tenants", "limits", "acme", "--concurrency", "0")
        assert result.exit_code == 2
