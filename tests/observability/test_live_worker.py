"""A real `jobgate worker` process, seen from outside: its `/metrics`, the gateway's, `inspect`.

One worker runs a slow job while the checks look at it, as an operator would during an
incident: is a worker alive, what does it run, what waits, what failed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable

import httpx

from cli.inspect_command import render
from cli.inspection import Inspection
from tests.factories import auth, submit, wait_for_status
from tests.observability.conftest import MetricsWorker, RunCli, Samples, parse_samples
from tests.polling import POLL_INTERVAL_SECONDS, poll_job

DEFAULT = (("queue", "default"),)


async def _gateway(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse_samples(response.text)


async def _wait_for_gateway(
    client: httpx.AsyncClient, *, alive: int, in_flight: int, timeout: float = 5
) -> Samples:
    """Scrape the gateway until it sees `alive` workers and `in_flight` jobs on `default`."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await _gateway(client)
        if (
            samples.get("jobgate_workers_alive", {}).get(()) == alive
            and samples.get("jobgate_jobs_in_flight", {}).get(DEFAULT) == in_flight
        ):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"gateway never saw {alive} workers, {in_flight} in flight")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def test_a_running_worker_shows_in_metrics_and_inspect(
    client: httpx.AsyncClient,
    token: str,
    metrics_worker: Callable[[], MetricsWorker],
    run_cli: RunCli,
) -> None:
    worker = metrics_worker()
    done = await submit(client, token, "echo", {"message": "hi"})
    await wait_for_status(client, token, done["id"], "succeeded", timeout=20)  # start-up included
    slow = await submit(client, token, "sleep", {"seconds": 30, "steps": 30})
    await poll_job(client, token, slow["id"], lambda job: job["status"] == "running")

    gateway = await _wait_for_gateway(client, alive=1, in_flight=1)
    assert gateway["jobgate_queue_workers"][DEFAULT] == 1
    assert gateway["jobgate_jobs_submitted_total"] == {
        (("job_type", "echo"), ("queue", "default")): 1,
        (("job_type", "sleep"), ("queue", "default")): 1,
    }

    own = parse_samples(await worker.scrape())
    assert own["jobgate_jobs_succeeded_total"] == {(("job_type", "echo"), ("queue", "default")): 1}
    assert own["jobgate_worker_jobs_in_flight"] == {DEFAULT: 1}
    assert own["jobgate_job_queue_wait_seconds_count"][(("job_type", "sleep"),)] == 1
    assert own["jobgate_job_run_seconds_count"][(("job_type", "echo"),)] == 1

    shown = await run_cli("inspect", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    (announced,) = view["workers"]
    assert announced["name"] == worker.name
    assert announced["queues"] == ["default"]
    assert announced["in_flight"] == {"default": 1}
    assert announced["started"] == announced["finished"] + 1 == 2
    (running,) = view["running"]
    assert running["id"] == slow["id"]
    assert (running["name"], running["tenant"], running["worker"]) == ("sleep", "acme", worker.name)
    assert view["recent_failures"] == []
    assert {(line["queue"], line["priority"]) for line in view["queues"]} >= {
        ("default", "critical"),
        ("default", "default"),
        ("default", "low"),
    }

    table = render(Inspection.model_validate(view))  # what `jobgate inspect` prints
    assert "workers alive: 1" in table
    assert worker.name in table
    assert slow["id"] in table

    # Cancelled while running: the worker counts it, the gateway does not.
    response = await client.post(f"/jobs/{slow['id']}/cancel", headers=auth(token))
    assert response.status_code == 202
    await wait_for_status(client, token, slow["id"], "cancelled")
    own = parse_samples(await worker.scrape())
    assert own["jobgate_jobs_cancelled_total"] == {(("job_type", "sleep"), ("queue", "default")): 1}
    assert "jobgate_jobs_cancelled_total" not in await _gateway(client)

    # A stopping worker withdraws at once: no waiting for its announcement to expire.
    worker.process.signal(signal.SIGTERM)
    assert await worker.process.exit_code(timeout=15) == 0
    assert (await _gateway(client))["jobgate_workers_alive"] == {(): 0}
