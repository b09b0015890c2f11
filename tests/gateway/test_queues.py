"""`/admin/queues`: list queues, pause and resume one; the operator token only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.factories import auth, submit
from tests.gateway.problem_checks import assert_problem
from tests.gateway.test_admin import BAD_OPERATOR_HEADERS
from tests.gateway.test_job_state_metrics import _scrape


@pytest.fixture
def operator(settings: Settings) -> dict[str, str]:
    assert settings.admin_token is not None
    return auth(settings.admin_token.get_secret_value())


def _by_queue(listed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {queue["queue"]: queue for queue in listed}


ROUTES = [
    ("GET", "/admin/queues"),
    ("POST", "/admin/queues/default/pause"),
    ("POST", "/admin/queues/default/resume"),
]


class TestAuth:
    @pytest.mark.parametrize(("method", "path"), ROUTES)
    @pytest.mark.parametrize("headers", BAD_OPERATOR_HEADERS)
    async def test_without_the_operator_token_is_401(
        self, client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
    ) -> None:
        response = await client.request(method, path, headers=headers)
        assert_problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_a_tenant_api_key_is_not_the_operator_token(
        self, client: httpx.AsyncClient, token: str, method: str, path: str
    ) -> None:
        response = await client.request(method, path, headers=auth(token))
        assert_problem(response, 401, "unauthenticated")


class TestListQueues:
    async def test_every_known_queue_with_its_waiting_jobs(
        self, client: httpx.AsyncClient, operator: dict[str, str], token: str
    ) -> None:
        for priority in ("critical", "low", "low"):
            await submit(client, token, "echo", {"message": "x"}, {"priority": priority})
        response = await client.get("/admin/queues", headers=operator)
        assert response.status_code == 200, response.text
        queues = _by_queue(response.json())
        assert set(queues) == {"data_processing", "default", "email", "maintenance"}
        default = queues["default"]
        assert default["paused"] is False
        assert default["paused_at"] is None and default["paused_by"] is None
        assert default["waiting"] == {"critical": 1, "default": 0, "low": 2}
        assert default["oldest_waiting_age_seconds"] is not None
        assert default["running"] == 0
        assert queues["email"]["waiting"] == {"critical": 0, "default": 0, "low": 0}
        assert queues["email"]["oldest_waiting_age_seconds"] is None


class TestPauseQueue:
    async def test_an_unknown_queue_is_404(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        for action in ("pause", "resume"):
            response = await client.post(f"/admin/queues/nowhere/{action}", headers=operator)
            assert_problem(response, 404, "queue-not-found")

    async def test_pauses_with_a_reason_and_submits_still_queue(
        self, client: httpx.AsyncClient, operator: dict[str, str], token: str
    ) -> None:
        response = await client.post(
            "/admin/queues/default/pause", json={"reason": "billing is down"}, headers=operator
        )
        assert response.status_code == 200, response.text
        paused = response.json()
        assert paused["paused"] is True
        assert paused["paused_by"] == "api"
        assert paused["reason"] == "billing is down"
        assert paused["paused_at"] is not None
        job = await submit(client, token, "echo", {"message": "held"})
        assert job["status"] == "queued"
        listed = _by_queue((await client.get("/admin/queues", headers=operator)).json())
        assert listed["default"]["paused"] is True
        assert listed["default"]["waiting"]["default"] == 1
        assert listed["email"]["paused"] is False

    async def test_pause_and_resume_are_idempotent(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        first = await client.post("/admin/queues/email/pause", headers=operator)
        again = await client.post(
            "/admin/queues/email/pause", json={"reason": "later"}, headers=operator
        )
        assert again.status_code == 200
        assert again.json()["paused_at"] == first.json()["paused_at"]
        assert again.json()["reason"] is None  # the first pause stands, as it was
        for _ in range(2):
            resumed = await client.post("/admin/queues/email/resume", headers=operator)
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["paused"] is False
            assert resumed.json()["paused_at"] is None

    async def test_a_reason_too_long_is_422(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        response = await client.post(
            "/admin/queues/default/pause", json={"reason": "x" * 501}, headers=operator
        )
        assert_problem(response, 422, "validation-error")


class TestPausedMetric:
    async def test_one_while_paused_zero_otherwise(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        def paused(samples: dict[tuple[tuple[str, str], ...], float]) -> dict[str, float]:
            return {dict(labels)["queue"]: value for labels, value in samples.items()}

        before = paused((await _scrape(client))["jobgate_queue_paused"])
        assert before == {"data_processing": 0, "default": 0, "email": 0, "maintenance": 0}
        await client.post("/admin/queues/default/pause", headers=operator)
        during = paused((await _scrape(client))["jobgate_queue_paused"])
        assert during["default"] == 1 and during["email"] == 0
        await client.post("/admin/queues/default/resume", headers=operator)
        assert paused((await _scrape(client))["jobgate_queue_paused"])["default"] == 0
