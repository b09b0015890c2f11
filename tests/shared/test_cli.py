"""The `jobgate` command line against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from cli.main import app
from shared.settings import Settings, get_settings
from tests.conftest import ADMIN_TOKEN
from tests.factories import auth, make_tenant, submit, wait_for_status
from worker.settings import worker_name


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


@pytest.mark.usefixtures("cli_env")
class TestTenantsAndKeys:
    async def test_create_tenant_prints_a_working_key_once(self, client: httpx.AsyncClient) -> None:
        result = await jobgate("tenants", "create", "cli-co")
        assert result.exit_code == 0, result.output
        token = result.output.split("api key (shown once): ")[1].split()[0]
        response = await client.get("/jobs", headers=auth(token))
        assert response.status_code == 200

    async def test_keys_create_with_scopes_and_revoke(self, client: httpx.AsyncClient) -> None:
        await jobgate("tenants", "create", "cli-co")
        created = await jobgate("keys", "create", "cli-co", "--scope", "jobs:read")
        assert created.exit_code == 0, created.output
        key_id = created.output.split()[2]
        token = created.output.split("api key (shown once): ")[1].split()[0]
        assert (await client.get("/jobs", headers=auth(token))).status_code == 200
        submit_attempt = await client.post(
            "/jobs/echo", json={"args": {"message": "x"}}, headers=auth(token)
        )
        assert submit_attempt.status_code == 403
        revoked = await jobgate("keys", "revoke", key_id)
        assert revoked.exit_code == 0, revoked.output
        assert (await client.get("/jobs", headers=auth(token))).status_code == 401

    async def test_unknown_tenant_is_a_clear_error(self) -> None:
        result = await jobgate("keys", "create", "nobody")
        assert result.exit_code == 1
        assert "No tenant 'nobody'" in result.output


@pytest.mark.usefixtures("cli_env")
class TestJobCommands:
    async def test_cancel_by_id(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "x"})
        result = await jobgate("jobs", "cancel", job["id"])
        assert result.exit_code == 0, result.output
        read = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        assert read.json()["status"] == "cancelled"

    async def test_purge_a_tenant_reports_the_count(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        _, other = await make_tenant(sessionmaker, "other")
        for i in range(3):
            await submit(client, token, "echo", {"message": str(i)})
        theirs = await submit(client, other, "echo", {"message": "t"})
        result = await jobgate("jobs", "purge", "--tenant", "acme")
        assert result.exit_code == 0, result.output
        assert "purged 3 waiting jobs" in result.output
        read = await client.get(f"/jobs/{theirs['id']}", headers=auth(other))
        assert read.json()["status"] == "queued"
        by_queue = await jobgate("jobs", "purge", "--queue", "default")
        assert "purged 1 waiting jobs" in by_queue.output

    async def test_dlq_lists_and_requeues_failed_jobs(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        failed = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
        await wait_for_status(client, token, failed["id"], "failed")
        ok = await submit(client, token, "echo", {"message": "fine"})
        await wait_for_status(client, token, ok["id"], "succeeded")

        listed = await jobgate("dlq", "list")
        assert failed["id"] in listed.output and ok["id"] not in listed.output
        assert "permanent" in listed.output

        retried = await jobgate("dlq", "retry", "--name", "flaky")
        assert "re-queued 1 failed jobs" in retried.output
        old = (await client.get(f"/jobs/{failed['id']}", headers=auth(token))).json()
        assert old["retried_by"] is not None
        await wait_for_status(client, token, old["retried_by"], "failed")
        # Already re-run jobs are not re-queued twice (the re-run failed too: that one is new).
        again = await jobgate("dlq", "retry", "--name", "flaky")
        assert "re-queued 1 failed jobs" in again.output

    async def test_dlq_retry_refused_by_redis_changes_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        failed = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
        await wait_for_status(client, token, failed["id"], "failed")
        with monkeypatch.context() as down:
            down.setenv("JOBGATE_REDIS_URL", "redis://127.0.0.1:1/0")
            down.setenv("JOBGATE_REDIS_TIMEOUT_SECONDS", "0.5")
            get_settings.cache_clear()
            refused = await jobgate("dlq", "retry")
        get_settings.cache_clear()
        assert refused.exit_code == 1
        assert "re-queued 0 failed jobs, then stopped: " in refused.output
        assert "Redis" in refused.output
        old = (await client.get(f"/jobs/{failed['id']}", headers=auth(token))).json()
        assert old["retried_by"] is None
        assert len((await client.get("/jobs", headers=auth(token))).json()["items"]) == 1
        assert failed["id"] in (await jobgate("dlq", "list")).output
        retried = await jobgate("dlq", "retry")
        assert "re-queued 1 failed jobs" in retried.output

    async def test_dlq_list_shows_tenant_names_and_ids_on_request(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        failed = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
        await wait_for_status(client, token, failed["id"], "failed")

        by_name = await jobgate("dlq", "list")
        assert by_name.exit_code == 0, by_name.output
        assert by_name.output.split()[:2] == [failed["id"], "acme"]
        assert tenant_id not in by_name.output

        by_id = await jobgate("dlq", "list", "--ids")
        assert by_id.exit_code == 0, by_id.output
        assert by_id.output.split()[:2] == [failed["id"], tenant_id]


def _row(output: str, queue: str) -> list[str]:
    (line,) = [line for line in output.splitlines() if line.split()[:1] == [queue]]
    return line.split()


@pytest.mark.usefixtures("cli_env")
class TestQueues:
    """`jobgate queues list|pause|resume`, and the paused state in `jobgate inspect`."""

    async def test_pause_list_and_resume(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        await submit(client, token, "echo", {"message": "x"}, {"priority": "critical"})
        paused = await jobgate("queues", "pause", "default", "--reason", "deploy")
        assert paused.exit_code == 0, paused.output
        assert paused.output.strip() == "queue default: paused"

        listed = await jobgate("queues", "list")
        assert listed.exit_code == 0, listed.output
        assert listed.output.splitlines()[0].split() == [
            *("QUEUE", "STATE", "CRITICAL", "DEFAULT", "LOW", "RUNNING", "OLDEST", "DUE"),
        ]
        assert _row(listed.output, "default")[:6] == ["default", "paused", "1", "0", "0", "0"]
        assert "by cli at" in listed.output and ": deploy" in listed.output
        assert _row(listed.output, "email")[:2] == ["email", "running"]

        api = await client.get("/admin/queues", headers=auth(ADMIN_TOKEN))
        default = {queue["queue"]: queue for queue in api.json()}["default"]
        assert default["paused"] is True and default["paused_by"] == "cli"
        assert default["reason"] == "deploy"

        inspected = await jobgate("inspect")
        assert _row(inspected.output, "default")[-1] == "paused"
        as_json = json.loads((await jobgate("inspect", "--json")).output)
        assert as_json["paused_queues"] == ["default"]

        resumed = await jobgate("queues", "resume", "default")
        assert resumed.exit_code == 0, resumed.output
        assert _row((await jobgate("queues", "list")).output, "default")[1] == "running"

    async def test_an_unknown_queue_is_a_clear_error(self) -> None:
        for action in ("pause", "resume"):
            result = await jobgate("queues", action, "nowhere")
            assert result.exit_code == 1
            assert "No job type runs on a queue named 'nowhere'" in result.output


@pytest.mark.usefixtures("cli_env")
class TestInspectJob:
    """`jobgate inspect JOB_ID`: one job of any tenant, and its attempts."""

    async def test_a_flaky_jobs_attempts_as_a_table_and_as_json(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker, "acme")
        job = await submit(client, token, "flaky", {"fail_times": 1})
        await wait_for_status(client, token, job["id"], "succeeded")

        shown = await jobgate("inspect", job["id"])

        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert lines[0].split() == ["job", job["id"], "flaky", "tenant", "acme", "queue", "default"]
        assert lines[1] == "status succeeded, try 2 of 3"
        assert "attempts: 2" in lines
        (failed,) = [line.split() for line in lines if line.split()[:2] == ["1", "retrying"]]
        assert failed[2] == worker_name()
        assert "RetryableJobError:" in failed
        (succeeded,) = [line.split() for line in lines if line.split()[:2] == ["2", "succeeded"]]
        assert succeeded[2] == worker_name()

        as_json = json.loads((await jobgate("inspect", job["id"], "--json")).output)
        assert as_json["tenant"] == "acme"
        assert as_json["job"]["status"] == "succeeded"
        assert [a["outcome"] for a in as_json["attempts"]] == ["retrying", "succeeded"]
        assert as_json["attempts"][0]["error"]["type"] == "RetryableJobError"

    async def test_an_unknown_job_is_a_clear_error(self) -> None:
        missing = str(uuid.uuid4())
        result = await jobgate("inspect", missing)
        assert result.exit_code == 1
        assert f"no job {missing}" in result.output
