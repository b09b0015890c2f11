"""The README's "Call jobgate from any language" examples, run as written against a live gateway."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live_gateway import LiveGateway

README = Path(__file__).resolve().parents[2] / "README.md"


def _code_blocks(heading: str, language: str) -> list[str]:
    """The `language` code blocks under the README's `### heading`, up to the next heading."""
    text = README.read_text()
    start = text.index(f"### {heading}\n") + len(f"### {heading}\n")
    section = re.split(r"\n##+ ", text[start:], maxsplit=1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def test_python_example_prints_what_its_comments_say(
    live_gateway: LiveGateway,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (example,) = _code_blocks("Python / Flask (without jobgate's code)", "python")
    monkeypatch.setenv("JOBGATE_URL", live_gateway.url)
    monkeypatch.setenv("JOBGATE_API_KEY", api_key)

    exec(compile(example, "README.md", "exec"), {})  # noqa: S102 (our own README)

    promised = re.findall(r"# (succeeded .*|422 .*)$", example, re.MULTILINE)
    assert capsys.readouterr().out.splitlines() == promised


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_example_submits_waits_and_shows_a_problem(
    live_gateway: LiveGateway, api_key: str
) -> None:
    (example,) = _code_blocks("curl", "sh")
    # The reader's own `export JOBGATE=... KEY=...` line, with this gateway and key instead.
    script = re.sub(r"^export JOBGATE=.*$", "", example, flags=re.MULTILINE)
    env = {**os.environ, "JOBGATE": live_gateway.url, "KEY": api_key}

    run = subprocess.run(  # noqa: S603 (our own README, run by bash)
        ["bash", "-euo", "pipefail", "-c", script],  # noqa: S607
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert '"status":"succeeded"' in run.stdout
    assert '"result":{"message":"hellohello"}' in run.stdout
    assert '"type":"/problems/validation-error"' in run.stdout
    assert '"loc":["body","args","repeat"]' in run.stdout
