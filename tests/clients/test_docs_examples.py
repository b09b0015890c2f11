"""The README's and docs/' examples, run as written against a live gateway (or in-process).

Each example is taken from its page by heading (`tests.docs_examples`), so what runs here is
what a reader copies.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from typing import Any

import pytest

from tests.docs_examples import (
    ATTEMPT_HISTORY_CURL,
    CLIENTS_CURL,
    FIRST_JOB_CURL,
    PYTHON_CLIENT,
    START_DEADLINE_CURL,
    TESTING_JOB_CODE,
    Example,
)
from tests.live_gateway import LiveGateway


def test_python_client_example_prints_what_its_comments_say(
    live_gateway: LiveGateway,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (example,) = PYTHON_CLIENT.blocks()
    monkeypatch.setenv("JOBGATE_URL", live_gateway.url)
    monkeypatch.setenv("JOBGATE_API_KEY", api_key)

    exec(compile(example, str(PYTHON_CLIENT.page), "exec"), {})  # noqa: S102 (our own docs)

    promised = re.findall(r"# (succeeded .*|422 .*)$", example, re.MULTILINE)
    assert capsys.readouterr().out.splitlines() == promised


def _run_curl_example(example: Example, url: str, key: str) -> str:
    (script,) = example.blocks()
    # The reader's own `export JOBGATE=... KEY=...` line, with this gateway and key instead.
    script = re.sub(r"^export JOBGATE=.*$", "", script, flags=re.MULTILINE)
    run = subprocess.run(  # noqa: S603 (our own docs, run by bash)
        ["bash", "-euo", "pipefail", "-c", script],  # noqa: S607
        env={**os.environ, "JOBGATE": url, "KEY": key},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_first_job_submits_and_gets_the_result(
    live_gateway: LiveGateway, api_key: str
) -> None:
    out = _run_curl_example(FIRST_JOB_CURL, live_gateway.url, api_key)

    assert '"status":"succeeded"' in out
    assert '"result":{"message":"hellohello"}' in out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_example_submits_waits_and_shows_a_problem(
    live_gateway: LiveGateway, api_key: str
) -> None:
    out = _run_curl_example(CLIENTS_CURL, live_gateway.url, api_key)

    assert '"status":"succeeded"' in out
    assert '"result":{"message":"hellohello"}' in out
    assert '"type":"/problems/validation-error"' in out
    assert '"loc":["body","args","repeat"]' in out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_attempt_history_example_lists_both_failures_then_the_success(
    live_gateway: LiveGateway, api_key: str
) -> None:
    out = _run_curl_example(ATTEMPT_HISTORY_CURL, live_gateway.url, api_key)

    attempts = json.loads(out)["attempts"]
    assert [(a["number"], a["outcome"]) for a in attempts] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "succeeded"),
    ]
    assert [a["error"] and a["error"]["message"] for a in attempts] == [
        "failing on purpose, attempt 1 of 2 to fail",
        "failing on purpose, attempt 2 of 2 to fail",
        None,
    ]


def test_start_deadline_example_sets_deadlines_and_refuses_a_past_one(
    live_gateway: LiveGateway, api_key: str
) -> None:
    out = _run_curl_example(START_DEADLINE_CURL, live_gateway.url, api_key)

    assert out.count('"start_by":"20') == 2  # both submits: a deadline, in UTC
    assert '"type":"/problems/validation-error"' in out
    assert '"loc":["body","options"]' in out
    assert "start_by is in the past: the job could never start" in out
    assert out.rstrip().endswith('"next_cursor":null}')  # the expired list (none yet)


async def test_testing_job_code_example_runs_in_process() -> None:
    """The first block of "Testing job code": no PostgreSQL, no Redis, top-level awaits."""
    example = TESTING_JOB_CODE.blocks()[0]
    code = compile(
        example,
        str(TESTING_JOB_CODE.page),
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    namespace: dict[str, Any] = {}
    pending = eval(code, namespace)  # noqa: S307 (our own docs; a coroutine when it awaits)
    assert pending is not None, "the example no longer awaits anything"
    await pending
    assert namespace["progress"].reports
