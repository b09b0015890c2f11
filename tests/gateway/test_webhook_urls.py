"""Submitting a `webhook_url` that can never be delivered: 422 before anything is stored.

Only what the URL itself shows is judged at submit (its scheme, a literal IP host); host names
are resolved and checked at delivery (tests/worker/test_webhook_destinations.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job
from shared.settings import WebhookSettings
from tests.conftest import ClientFactory
from tests.factories import auth, submit
from tests.gateway.problem_checks import assert_problem

PRIVATE = [
    "http://127.0.0.1:8080/hook",
    "http://10.0.0.5/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:9000/hook",
    "https://[fc00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0:8080/hook",
    "http://127.1/hook",  # read as 127.0.0.1, like browsers and resolvers do
]


async def _count_jobs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Job))).scalar_one()


def _assert_refused(response: httpx.Response, loc: list[str | int]) -> dict[str, Any]:
    body = assert_problem(response, 422, "webhook-url-refused")
    assert [issue["loc"] for issue in body["errors"]] == [loc]
    (issue,) = body["errors"]
    assert issue["type"] == "webhook_url_refused"
    assert "not a public address" in issue["msg"]
    return body


class TestSubmit:
    @pytest.mark.parametrize("url", PRIVATE)
    async def test_a_literal_private_address_is_422_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        url: str,
    ) -> None:
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}, "options": {"webhook_url": url}},
            headers=auth(token),
        )
        body = _assert_refused(response, ["body", "options", "webhook_url"])
        assert body["detail"].startswith("The webhook_url is refused: ")
        assert await _count_jobs(sessionmaker) == 0

    async def test_with_an_idempotency_key_too(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
    ) -> None:
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}, "options": {"webhook_url": PRIVATE[0]}},
            headers=auth(token) | {"Idempotency-Key": "k1"},
        )
        _assert_refused(response, ["body", "options", "webhook_url"])
        assert await _count_jobs(sessionmaker) == 0

    async def test_a_batch_names_the_job_and_stores_none(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
    ) -> None:
        jobs = [
            {"args": {"message": "a"}, "options": {"webhook_url": "https://93.184.215.14/ok"}},
            {"args": {"message": "b"}, "options": {"webhook_url": "http://192.168.0.1/x"}},
        ]
        response = await client.post("/jobs/echo/batch", json={"jobs": jobs}, headers=auth(token))
        _assert_refused(response, ["body", "jobs", 1, "options", "webhook_url"])
        assert await _count_jobs(sessionmaker) == 0

    async def test_a_workflow_step_is_named_by_its_place(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
    ) -> None:
        workflow = {
            "type": "chain",
            "steps": [
                {"type": "step", "job": "echo", "args": {"message": "a"}},
                {
                    "type": "step",
                    "job": "echo",
                    "args": {"message": "b"},
                    "options": {"webhook_url": "http://169.254.169.254/"},
                },
            ],
        }
        response = await client.post("/workflows", json={"workflow": workflow}, headers=auth(token))
        _assert_refused(response, ["body", "workflow", "steps", 1, "options", "webhook_url"])
        assert await _count_jobs(sessionmaker) == 0

    async def test_host_names_and_public_addresses_are_accepted(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        """A name is resolved when the webhook is sent, not now: DNS may change meanwhile."""
        for url in ("http://localhost:8080/hook", "https://93.184.215.14/hook"):
            job = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": url})
            assert job["webhook"]["url"] == url

    async def test_an_allowed_network_lets_a_private_address_through(
        self, make_client: ClientFactory, token: str
    ) -> None:
        client = await make_client(webhooks=WebhookSettings(allowed_networks=["10.0.0.0/8"]))
        job = await submit(
            client, token, "echo", {"message": "hi"}, {"webhook_url": "http://10.0.0.5/hook"}
        )
        assert job["webhook"]["url"] == "http://10.0.0.5/hook"
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}, "options": {"webhook_url": "http://11.0.0.5/x"}},
            headers=auth(token),
        )
        assert response.status_code == 202, response.text  # public: allowed anyway
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}, "options": {"webhook_url": PRIVATE[0]}},
            headers=auth(token),
        )
        _assert_refused(response, ["body", "options", "webhook_url"])

    async def test_a_scheme_left_out_of_allowed_schemes_is_422(
        self, make_client: ClientFactory, token: str
    ) -> None:
        client = await make_client(webhooks=WebhookSettings(allowed_schemes=["https"]))
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}, "options": {"webhook_url": "http://a.example/x"}},
            headers=auth(token),
        )
        body = assert_problem(response, 422, "webhook-url-refused")
        assert "'http' is not allowed" in body["detail"]
        assert body["errors"][0]["loc"] == ["body", "options", "webhook_url"]
