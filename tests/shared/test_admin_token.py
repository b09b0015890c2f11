"""The operator token: refused outside `dev` when short, a placeholder or predictable, and never
shown, whichever entry point starts the process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from shared.settings import Settings
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
# What an operator who copies the shipped example Secret gets.
EXAMPLE_SECRET = ROOT / "deploy" / "k8s" / "secret.example.yaml"
PUBLISHED = yaml.safe_load(EXAMPLE_SECRET.read_text())["stringData"]["JOBGATE_ADMIN_TOKEN"]

WEAK = [
    pytest.param("x", "must be at least 24 characters", id="one-character"),
    pytest.param("a" * 24, "is too predictable to be random", id="one-letter"),
    pytest.param("123456789012345678901234", "is too predictable to be random", id="digits"),
    pytest.param("abcdefghij" * 3, "is too predictable to be random", id="repeated"),
    pytest.param(PUBLISHED, "is a placeholder, not a secret", id="the-example-secret"),
    pytest.param("Change_Me_" + secrets.token_hex(12), "is a placeholder", id="changeme"),
]
STRONG = [
    pytest.param(secrets.token_hex(24), id="openssl-rand-hex-24"),
    pytest.param(secrets.token_hex(12), id="openssl-rand-hex-12"),
    pytest.param(secrets.token_urlsafe(24), id="urlsafe"),
    pytest.param(ADMIN_TOKEN, id="the-tests-token"),
]


@pytest.mark.parametrize("env", ["test", "prod"])
@pytest.mark.parametrize(("token", "problem"), WEAK)
def test_a_weak_token_is_refused_outside_dev(env: str, token: str, problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env=env, admin_token=token)
    assert f"JOBGATE_ADMIN_TOKEN {problem}" in str(refused.value)


@pytest.mark.parametrize("env", ["test", "prod"])
@pytest.mark.parametrize("token", STRONG)
def test_a_random_token_is_accepted(env: str, token: str) -> None:
    settings = Settings(env=env, admin_token=token)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == token


@pytest.mark.parametrize(("token", "problem"), WEAK)
def test_dev_accepts_any_token(token: str, problem: str) -> None:
    settings = Settings(env="dev", admin_token=token)
    assert settings.admin_token is not None


DB_PASSWORD = "db-pass-" + secrets.token_hex(6)
ENTRY_POINTS = [
    pytest.param(
        [sys.executable, "-m", "uvicorn", "gateway.main:app", "--port", "1"], id="uvicorn"
    ),
    pytest.param([sys.executable, "-m", "arq", "worker.WorkerSettings"], id="arq"),
    pytest.param([str(Path(sys.executable).parent / "jobgate"), "worker"], id="jobgate-worker"),
]


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_every_entry_point_refuses_the_published_token_and_shows_no_secret(
    command: list[str],
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBGATE_")}
    env |= {
        "JOBGATE_ENV": "prod",
        "JOBGATE_ADMIN_TOKEN": PUBLISHED,
        # Unreachable on purpose: the process must stop before connecting to anything.
        "JOBGATE_DATABASE_URL": f"postgresql+asyncpg://jobgate:{DB_PASSWORD}@127.0.0.1:1/jobgate",
        "JOBGATE_REDIS_URL": f"redis://:{DB_PASSWORD}@127.0.0.1:1/0",
    }
    finished = subprocess.run(  # noqa: S603 (this interpreter and fixed arguments)
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 2, output
    assert "error: JOBGATE_ADMIN_TOKEN is a placeholder, not a secret" in output
    assert "Traceback" not in output
    assert PUBLISHED not in output
    assert DB_PASSWORD not in output


@pytest.mark.parametrize(
    "command", [param for param in ENTRY_POINTS if param.id in {"arq", "jobgate-worker"}]
)
def test_a_worker_without_server_urls_says_what_to_set(command: list[str]) -> None:
    """A newcomer's first `arq worker.WorkerSettings` with nothing set: a line, not a traceback."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBGATE_")}
    finished = subprocess.run(  # noqa: S603 (this interpreter and fixed arguments)
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 2, output
    assert "error: JOBGATE_" in output and "is not set" in output, output
    assert "Traceback" not in output
