"""The gateway's `/metrics` beyond HTTP: queue depths, workers and cancellations, at scrape time."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ClientFactory, WorkerFactory
from tests.factories import auth, submit, wait_for_status
from tests.polling import poll_job

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


async def _scrape(client: httpx.AsyncClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the scrape: name -> sorted labels -> value."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def _line(queue: str, priority: str) -> tuple[tuple[str, str], ...]:
    return (("priority", priority), ("queue", queue))


class TestQueueDepth:
    async def test_counts_due_jobs_by_queue_and_priority(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        # No worker runs: everything submitted stays where the enqueue put it.
        for priority, count in (("critical", 2), ("default", 1), ("low", 3)):
            for _ in range(count):
                await submit(client, token, "echo", {"message": "x"}, {"priority": priority})
        await submit(client, token, "echo", {"message": "later"}, {"delay_seconds": 600})
        samples = await _scrape(client)
        depth = samples["jobgate_queue_depth"]
        assert depth[_line("default", "critical")] == 2
        assert depth[_line("default", "default")] == 1
        assert depth[_line("default", "low")] == 3
        # Every registered queue is listed, empty ones at zero.
        assert depth[_line("email", "critical")] == 0
        assert samples["jobgate_scheduled_jobs"] == {
            (("state", "waiting"),): 1,
            (("state", "overdue"),): 0,
        }
        assert samples["jobgate_redis_up"] == {(): 1}

    async def test_the_head_of_a_line_ages_while_nobody_takes_it(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        await submit(client, token, "echo", {"message": "x"}, {"priority": "critical"})
        await asyncio.sleep(0.3)  # the age measured is this wait itself
        oldest = (await _scrape(client))["jobgate_queue_oldest_job_age_seconds"]
        assert 0.3 <= oldest[_line("default", "critical")] < 10
        assert oldest[_line("default", "default")] == 0  # empty line

    async def test_a_running_job_is_not_waiting_and_does_not_age_its_line(
        self, client: httpx.AsyncClient, token: str, start_worker: WorkerFactory
    ) -> None:
        # ARQ keeps a running job on its queue until it ends: it must not count as waiting.
        await start_worker(max_jobs=1)
        slow = await submit(client, token, "sleep", {"seconds": 30, "steps": 30})
        await poll_job(client, token, slow["id"], lambda found: found["status"] == "running")
        await asyncio.sleep(0.3)
        samples = await _scrape(client)
        assert samples["jobgate_queue_depth"][_line("default", "default")] == 0
        assert samples["jobgate_queue_oldest_job_age_seconds"][_line("default", "default")] == 0
        # A job behind it (the worker is full) is the head of the line, not the running one.
        await submit(client, token, "echo", {"message": "behind"})
        samples = await _scrape(client)
        assert samples["jobgate_queue_depth"][_line("default", "default")] == 1
        assert samples["jobgate_queue_oldest_job_age_seconds"][_line("default", "default")] < 0.3
        response = await client.post(f"/jobs/{slow['id']}/cancel", headers=auth(token))
        assert response.status_code == 202
        await wait_for_status(client, token, slow["id"], "cancelled")

    async def test_no_workers_means_zero_workers_and_nothing_in_flight(
        self, client: httpx.AsyncClient
    ) -> None:
        samples = await _scrape(client)
        assert samples["jobgate_workers_alive"] == {(): 0}
        assert samples["jobgate_queue_workers"][(("queue", "default"),)] == 0
        assert samples["jobgate_jobs_in_flight"][(("queue", "default"),)] == 0

    async def test_redis_down_still_answers_with_redis_up_zero(
        self, make_client: ClientFactory
    ) -> None:
        broken = await make_client(redis_url=UNREACHABLE_REDIS, redis_timeout_seconds=0.5)
        samples = await _scrape(broken)
        assert samples["jobgate_redis_up"] == {(): 0}
        # Unknown, not zero: a zero would read as "no backlog" and "no workers".
        assert "jobgate_queue_depth" not in samples
        assert "jobgate_workers_alive" not in samples


class TestCancellations:
    async def test_a_waiting_job_cancelled_is_counted_by_the_gateway(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "x"}, {"delay_seconds": 600})
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert response.status_code == 200
        # Cancelling it again is a 409, not a second count.
        again = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert again.status_code == 409
        cancelled = (await _scrape(client))["jobgate_jobs_cancelled_total"]
        assert cancelled == {(("job_type", "echo"), ("queue", "default")): 1}

    async def test_a_running_job_is_counted_by_its_worker_not_the_gateway(
        self, client: httpx.AsyncClient, token: str, start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        labels = {"job_type": "sleep", "queue": "default"}
        before = REGISTRY.get_sample_value("jobgate_jobs_cancelled_total", labels) or 0
        job = await submit(client, token, "sleep", {"seconds": 30, "steps": 30})
        await poll_job(client, token, job["id"], lambda found: found["status"] == "running")
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert response.status_code == 202
        await wait_for_status(client, token, job["id"], "cancelled")
        # This test's worker runs in this process: its counter is the default registry's.
        assert REGISTRY.get_sample_value("jobgate_jobs_cancelled_total", labels) == before + 1
        assert "jobgate_jobs_cancelled_total" not in await _scrape(client)
