"""`jobgate` without its settings, or with invalid ones: a line per problem, never a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from shared.settings import Settings, get_settings

NO_DATABASE = (
    "error: JOBGATE_DATABASE_URL is not set: point it at your PostgreSQL"
    " (postgresql+asyncpg://user@host/db), or run `jobgate dev` for embedded servers"
)
NO_REDIS = (
    "error: JOBGATE_REDIS_URL is not set: point it at your Redis"
    " (redis://host:6379/0), or run `jobgate dev` for embedded servers"
)
SOME_ID = "0190d6a0-0000-7000-8000-000000000000"  # fixed: xdist workers must collect the same ids
NEEDS_DATABASE = [
    ["migrate"],
    ["inspect"],
    ["tenants", "create", "acme"],
    ["tenants", "limits", "acme", "--rate", "5"],
    ["keys", "create", "acme"],
    ["keys", "revoke", SOME_ID],
    ["jobs", "cancel", SOME_ID],
    ["jobs", "purge", "--tenant", "acme"],
    ["dlq", "list"],
    ["dlq", "retry"],
]
NEEDS_REDIS = [["inspect"], ["jobs", "cancel", SOME_ID], ["dlq", "list"]]


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No `JOBGATE_*` setting, and no `.env` file in the working directory: a new user's shell."""
    for name in list(os.environ):
        if name.startswith("JOBGATE_") and not name.startswith("JOBGATE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def jobgate(*args: str) -> Result:
    """Run a `jobgate` command (in a thread: the CLI runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def assert_one_problem_per_line(result: Result, expected: list[str]) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == expected
    assert result.stdout == ""


@pytest.mark.usefixtures("bare_env")
class TestMissingSettings:
    @pytest.mark.parametrize(
        ("command", "has_database", "expected"),
        [("inspect", False, NO_DATABASE), ("worker", True, NO_REDIS)],
    )
    async def test_the_installed_script_says_what_to_set(
        self,
        tmp_path: Path,
        settings: Settings,
        command: str,
        has_database: bool,
        expected: str,
    ) -> None:
        """What a user runs, in a shell without the variables (the worker in its own process
        too: it configures logging for the whole process)."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("JOBGATE")}
        if has_database:
            env["JOBGATE_DATABASE_URL"] = settings.require_database_url()
        script = Path(sys.executable).with_name("jobgate")
        done = await asyncio.to_thread(
            subprocess.run,
            [str(script), command],
            env={**env, "JOBGATE_WORKER_METRICS_PORT": "0"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.splitlines() == [expected]
        assert done.stdout == ""

    @pytest.mark.parametrize("command", NEEDS_DATABASE, ids=" ".join)
    async def test_every_database_command_names_the_variable(self, command: list[str]) -> None:
        assert_one_problem_per_line(await jobgate(*command), [NO_DATABASE])

    @pytest.mark.parametrize("command", NEEDS_REDIS, ids=" ".join)
    async def test_every_redis_command_names_the_variable(
        self, command: list[str], settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("JOBGATE_DATABASE_URL", settings.require_database_url())
        assert_one_problem_per_line(await jobgate(*command), [NO_REDIS])


@pytest.mark.usefixtures("bare_env")
class TestInvalidSettings:
    async def test_one_line_per_problem_without_the_values(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("JOBGATE_DATABASE_URL", "postgresql://jobgate:hunter2@db/jobgate")
        monkeypatch.setenv("JOBGATE_REDIS_URL", "s3cret-pasted-here")
        monkeypatch.setenv("JOBGATE_WORKER_MAX_JOBS", "lots")
        monkeypatch.setenv("JOBGATE_WEBHOOKS__MAX_ATTEMPTS", "0")
        monkeypatch.setenv("JOBGATE_WORKER_QUEUE_CONCURRENCY", '{"email": "five"}')
        result = await jobgate("inspect")
        assert_one_problem_per_line(
            result,
            [
                "error: JOBGATE_DATABASE_URL: must be a URL like postgresql+asyncpg://user@host/db"
                " (it starts with postgresql://)",
                "error: JOBGATE_REDIS_URL: must be a redis://, rediss:// or unix:// URL like"
                " redis://host:6379/0",
                "error: JOBGATE_WORKER_MAX_JOBS: Input should be a valid integer,"
                " unable to parse string as an integer",
                "error: JOBGATE_WORKER_QUEUE_CONCURRENCY (at email): Input should be a valid"
                " integer, unable to parse string as an integer",
                "error: JOBGATE_WEBHOOKS__MAX_ATTEMPTS: Input should be greater than or equal to 1",
            ],
        )
        for secret in ("hunter2", "s3cret", "lots", "five"):
            assert secret not in result.output

    async def test_a_weak_admin_token_is_refused_without_showing_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("JOBGATE_ADMIN_TOKEN", "tiny-token-value")
        result = await jobgate("dlq", "list")
        assert_one_problem_per_line(
            result, ["error: JOBGATE_ADMIN_TOKEN must be at least 24 characters"]
        )
        assert "tiny-token-value" not in result.output

    async def test_commands_without_settings_still_work(self) -> None:
        result = await jobgate("openapi", "--check")
        assert result.exit_code == 0, result.output
