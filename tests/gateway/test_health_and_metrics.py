"""`/healthz`, `/readyz` and `/metrics`: what orchestrators and Prometheus see."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ClientFactory
from tests.factories import auth, submit
from tests.gateway.problem_checks import assert_problem

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called `name`, keyed by its sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


class TestHealthz:
    async def test_alive(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_alive_even_when_redis_is_down(self, make_client: ClientFactory) -> None:
        broken = await make_client(redis_url=UNREACHABLE_REDIS, redis_timeout_seconds=0.5)
        assert (await broken.get("/healthz")).status_code == 200


class TestReadyz:
    async def test_ready_when_both_dependencies_answer(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "ok",
            "checks": {"postgresql": "ok", "redis": "ok"},
        }

    async def test_redis_unreachable_is_503_naming_redis(self, make_client: ClientFactory) -> None:
        broken = await make_client(redis_url=UNREACHABLE_REDIS, redis_timeout_seconds=0.5)
        response = await broken.get("/readyz")
        body = assert_problem(response, 503, "not-ready")
        assert "redis" in body["detail"]
        assert "postgresql" not in body["detail"]
        assert body["checks"]["redis"].startswith("down")
        assert body["checks"]["postgresql"] == "ok"
        assert response.headers["retry-after"].isdigit()
        assert "127.0.0.1" not in response.text  # no internal addresses


class TestMetrics:
    async def test_counts_submitted_jobs_by_type(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        for _ in range(3):
            await submit(client, token, "echo", {"message": "hi"})
        await submit(client, token, "health_check", {})
        # A refused submit is not counted.
        refused = await client.post("/jobs/echo", json={"args": {}}, headers=auth(token))
        assert refused.status_code == 422
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        submitted = _samples(response.text, "jobgate_jobs_submitted_total")
        assert submitted == {
            (("job_type", "echo"), ("queue", "default")): 3.0,
            (("job_type", "health_check"), ("queue", "default")): 1.0,
        }

    async def test_exposes_http_metrics(self, client: httpx.AsyncClient, token: str) -> None:
        await submit(client, token, "echo", {"message": "hi"})
        assert (await client.get("/jobs")).status_code == 401
        response = await client.get("/metrics")
        requests = _samples(response.text, "http_requests_total")
        assert requests[(("handler", "/jobs/echo"), ("method", "POST"), ("status", "2xx"))] == 1
        assert requests[(("handler", "/jobs"), ("method", "GET"), ("status", "4xx"))] == 1
        assert not any(dict(labels)["handler"] == "/metrics" for labels in requests)
        durations = _samples(response.text, "http_request_duration_seconds_count")
        assert durations[(("handler", "/jobs/echo"), ("method", "POST"))] == 1

    async def test_job_ids_do_not_become_label_values(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        """Per-id handler labels would grow the series without bound."""
        job = await submit(client, token, "echo", {"message": "hi"})
        assert (await client.get(f"/jobs/{job['id']}", headers=auth(token))).status_code == 200
        response = await client.get("/metrics")
        assert job["id"] not in response.text
        requests = _samples(response.text, "http_requests_total")
        assert (("handler", "/jobs/{job_id}"), ("method", "GET"), ("status", "2xx")) in requests
