"""The Node.js client against a real gateway (uvicorn) and a real ARQ worker.

`examples/node/main.mjs` (which uses `@jobgate/client` through a `file:` dependency) submits an
`echo` job, long-polls for it and prints it; the test compares that with the job jobgate stored.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from arq.worker import Worker
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.processes import free_port, running, spawn, uvicorn_argv, wait_http_ready
from tests.clients.node_packages import EXAMPLE_DIR, install_as_a_user, install_example
from tests.factories import auth, make_tenant

NODE_TIMEOUT_SECONDS = 30
# Whichever test comes first installs the npm packages (a fresh machine downloads them).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
async def gateway_url(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """`uvicorn gateway.main:app` on a free loopback port, configured by environment only."""
    port = free_port()
    env = {
        **os.environ,
        "JOBGATE_ENV": "test",
        "JOBGATE_DATABASE_URL": database_url,
        "JOBGATE_REDIS_URL": redis_url,
        "JOBGATE_WAIT_RECHECK_SECONDS": "0.5",
    }
    log_dir = tmp_path_factory.mktemp("gateway")
    argv = uvicorn_argv("gateway.main:app", port)
    child = spawn("gateway", argv, env=env, log_dir=log_dir, port=port)
    async with running(child):
        await wait_http_ready(child, "/healthz", timeout_seconds=30)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def example() -> Path:
    install_example()
    return EXAMPLE_DIR


async def _node(example: Path, *argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        "node",
        *argv,
        cwd=example,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(NODE_TIMEOUT_SECONDS):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def _node_script(
    example: Path, script: str, gateway_url: str, token: str
) -> tuple[int, str, str]:
    """Run an ES module given as text, beside the example (so `@jobgate/client` resolves)."""
    env = {"JOBGATE_URL": gateway_url, "JOBGATE_API_KEY": token}
    return await _node(example, "--input-type=module", "--eval", script, env=env)


async def _job_reads(gateway_url: str) -> float:
    """How many `GET /jobs/{id}` the gateway has answered so far (its Prometheus counter)."""
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        metrics = (await http.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "http_requests_total"
        and sample.labels["handler"] == "/jobs/{job_id}"
        and sample.labels["method"] == "GET"
    )


async def test_the_node_example_prints_the_result_jobgate_recorded(
    example: Path,
    gateway_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: Worker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    env = {"JOBGATE_URL": gateway_url, "JOBGATE_API_KEY": token}

    code, stdout, stderr = await _node(example, "main.mjs", "hi from node", env=env)

    assert code == 0, stderr
    printed = json.loads(stdout)
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        response = await http.get(f"/jobs/{printed['id']}", headers=auth(token))
    assert response.status_code == 200, response.text
    recorded = response.json()
    assert recorded["name"] == "echo"
    assert printed == {"id": recorded["id"], "status": "succeeded", "result": recorded["result"]}
    assert recorded["result"] == {"message": "hi from nodehi from node"}


async def test_a_fresh_clone_runs_the_example_after_one_npm_ci(
    tmp_path: Path,
    gateway_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: Worker,
) -> None:
    """`cd examples/node && npm ci` alone installs, builds and links the client.

    As docs/clients.md says.
    """
    example = await asyncio.to_thread(install_as_a_user, tmp_path)
    _, token = await make_tenant(sessionmaker)
    env = {"JOBGATE_URL": gateway_url, "JOBGATE_API_KEY": token}

    code, stdout, stderr = await _node(example, "main.mjs", "fresh", env=env)

    assert code == 0, stderr
    assert json.loads(stdout)["result"] == {"message": "freshfresh"}


async def test_wait_for_long_polls_instead_of_polling(
    example: Path,
    gateway_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: Worker,
) -> None:
    """A 1.5 s job is awaited with one held request, not a stream of reads."""
    _, token = await make_tenant(sessionmaker)
    script = """
        import { createJobgateClient } from "@jobgate/client";
        const jobgate = createJobgateClient({
          baseUrl: process.env.JOBGATE_URL, apiKey: process.env.JOBGATE_API_KEY });
        const job = await jobgate.submit("sleep", { args: { seconds: 1.5 } });
        const done = await jobgate.waitFor(job.id, 20);
        console.log(JSON.stringify({ status: done.status, result: done.result }));
    """
    reads_before = await _job_reads(gateway_url)

    code, stdout, stderr = await _node_script(example, script, gateway_url, token)

    assert code == 0, stderr
    assert json.loads(stdout) == {
        "status": "succeeded",
        "result": {"slept": pytest.approx(1.5, abs=0.5)},
    }
    assert await _job_reads(gateway_url) - reads_before == 1


async def test_attempts_lists_each_attempt_of_a_job(
    example: Path,
    gateway_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: Worker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    script = """
        import { createJobgateClient } from "@jobgate/client";
        const jobgate = createJobgateClient({
          baseUrl: process.env.JOBGATE_URL, apiKey: process.env.JOBGATE_API_KEY });
        const job = await jobgate.submit("flaky", { args: { fail_times: 1 } });
        await jobgate.waitFor(job.id, 20);
        const attempts = await jobgate.attempts(job.id);
        console.log(JSON.stringify(attempts.map((a) => [a.number, a.outcome, a.error?.type])));
    """

    code, stdout, stderr = await _node_script(example, script, gateway_url, token)

    assert code == 0, stderr
    assert json.loads(stdout) == [[1, "retrying", "RetryableJobError"], [2, "succeeded", None]]


async def test_a_refused_request_surfaces_jobgate_s_problem(
    example: Path, gateway_url: str
) -> None:
    env = {"JOBGATE_URL": gateway_url, "JOBGATE_API_KEY": "jg_not_a_key"}

    code, stdout, stderr = await _node(example, "main.mjs", env=env)

    assert code == 2, stderr
    assert stdout == ""
    assert "jobgate refused: 401 Unauthorized" in stderr
