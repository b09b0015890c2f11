"""Webhooks: recorded with the terminal status, sent by workers, signed, retried, visible.

Outbound HTTP is mocked with respx (the gateway's in-process ASGI transport is not affected);
backoff and polling are shrunk through settings so retries take milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from arq.worker import Worker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import control
from shared.models import WebhookDelivery
from shared.settings import Settings, WebhookSettings
from shared.tenants import tenancy
from shared.webhooks import deliveries
from shared.webhooks.signing import sign, verify_signature
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.gateway.problem_checks import assert_problem, error_locations
from tests.polling import poll_job

HOOK_URL = "https://hooks.example.test/jobgate"
ROOMY = deliveries.Capacity(slots=10, per_tenant=10, per_host=10)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Webhook retries after milliseconds, found within a few."""
    fast = WebhookSettings(
        timeout_seconds=2, backoff_base_seconds=0.01, backoff_max_seconds=0.05,
        poll_interval_seconds=0.02, max_attempts=3,
        allowed_hosts=["hooks.example.test"],  # respx answers for it; it resolves nowhere
    )  # fmt: skip
    return settings.model_copy(update={"webhooks": fast})


@pytest.fixture
def receiver() -> Iterator[respx.MockRouter]:
    """The receivers' side: every outbound HTTP request of the test process lands here."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def operator(settings: Settings) -> dict[str, str]:
    assert settings.admin_token is not None
    return auth(settings.admin_token.get_secret_value())


async def _secret(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> str:
    async with sessionmaker() as session:
        return (await tenancy.find_tenant(session, tenant=tenant_id)).webhook_secret


async def _settled(
    client: httpx.AsyncClient, token: str, job_id: str, *, timeout: float = 5
) -> dict[str, Any]:
    """The job once its (one) webhook delivery is no longer pending."""

    def settled(job: dict[str, Any]) -> bool:
        deliveries = (job["webhook"] or {}).get("deliveries", [])
        return bool(deliveries) and deliveries[0]["status"] != "pending"

    return await poll_job(client, token, job_id, settled, timeout=timeout)


def _without_webhook(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if key != "webhook"}


class TestDelivery:
    async def test_a_succeeded_job_is_delivered_once_signed_with_the_final_job(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        route = receiver.post(HOOK_URL).respond(204)
        tenant_id, token = await make_tenant(sessionmaker)
        submitted = await submit(
            client, token, "echo", {"message": "ab", "repeat": 2}, {"webhook_url": HOOK_URL}
        )
        assert submitted["webhook"] == {"url": HOOK_URL, "deliveries": []}

        job = await _settled(client, token, submitted["id"])

        assert route.call_count == 1
        request = route.calls.last.request
        secret = await _secret(sessionmaker, tenant_id)
        assert verify_signature(secret, request.content, request.headers["X-Jobgate-Signature"])
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Jobgate-Event"] == "job.succeeded"
        (delivery,) = job["webhook"]["deliveries"]
        assert request.headers["X-Jobgate-Delivery"] == delivery["id"]
        body = json.loads(request.content)
        assert _without_webhook(body) == _without_webhook(job)
        assert body["status"] == "succeeded" and body["result"] == {"message": "abab"}
        assert body["webhook"]["url"] == HOOK_URL
        assert delivery["status"] == "delivered"
        assert delivery["attempts"] == 1
        assert delivery["last_status_code"] == 204
        assert delivery["delivered_at"] is not None
        assert set(delivery) == {"id", "status", "attempts", "last_status_code", "delivered_at"}

    async def test_a_failing_endpoint_is_retried_until_it_answers_2xx(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        route = receiver.post(HOOK_URL)
        route.side_effect = [httpx.Response(500), httpx.Response(200)]
        tenant_id, token = await make_tenant(sessionmaker)
        submitted = await submit(
            client, token, "echo", {"message": "hi"}, {"webhook_url": HOOK_URL}
        )

        job = await _settled(client, token, submitted["id"])

        (delivery,) = job["webhook"]["deliveries"]
        assert delivery["status"] == "delivered"
        assert delivery["attempts"] == 2
        assert delivery["last_status_code"] == 200
        assert route.call_count == 2
        secret = await _secret(sessionmaker, tenant_id)
        for call in route.calls:
            headers = call.request.headers
            assert headers["X-Jobgate-Delivery"] == delivery["id"]  # the same on every retry
            assert verify_signature(secret, call.request.content, headers["X-Jobgate-Signature"])

    async def test_gives_up_after_max_attempts(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        worker: Worker,
    ) -> None:
        route = receiver.post(HOOK_URL).mock(side_effect=httpx.ConnectError("refused"))
        _, token = await make_tenant(sessionmaker)
        submitted = await submit(
            client, token, "echo", {"message": "hi"}, {"webhook_url": HOOK_URL}
        )

        job = await _settled(client, token, submitted["id"])

        (delivery,) = job["webhook"]["deliveries"]
        assert delivery["status"] == "failed"
        assert delivery["attempts"] == settings.webhooks.max_attempts
        assert delivery["last_status_code"] is None
        assert delivery["delivered_at"] is None
        assert route.call_count == settings.webhooks.max_attempts

    async def test_a_failed_job_sends_job_failed(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        route = receiver.post(HOOK_URL).respond(200)
        _, token = await make_tenant(sessionmaker)
        args = {"fail_times": 1, "permanent": True}
        submitted = await submit(client, token, "flaky", args, {"webhook_url": HOOK_URL})

        await _settled(client, token, submitted["id"])

        request = route.calls.last.request
        assert request.headers["X-Jobgate-Event"] == "job.failed"
        assert json.loads(request.content)["error"]["type"] == "permanent"

    async def test_a_job_without_webhook_url_sends_nothing(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        route = receiver.post(url__startswith="https://hooks.example.test/").respond(200)
        _, token = await make_tenant(sessionmaker)
        plain = await submit(client, token, "echo", {"message": "quiet"})
        done = await wait_for_status(client, token, plain["id"], "succeeded")
        assert done["webhook"] is None
        # A hooked job finishing afterwards proves the sender ran past the plain one.
        hooked = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": HOOK_URL})
        await _settled(client, token, hooked["id"])

        assert route.call_count == 1
        assert json.loads(route.calls.last.request.content)["id"] == hooked["id"]
        async with sessionmaker() as session:
            count = await session.scalar(select(func.count()).select_from(WebhookDelivery))
        assert count == 1


class TestCancelAndPurge:
    async def test_cancelling_a_waiting_job_sends_job_cancelled(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        route = receiver.post(HOOK_URL).respond(200)
        _, token = await make_tenant(sessionmaker)
        options = {"webhook_url": HOOK_URL, "delay_seconds": 600}
        submitted = await submit(client, token, "echo", {"message": "later"}, options)

        cancelled = await client.post(f"/jobs/{submitted['id']}/cancel", headers=auth(token))
        assert cancelled.status_code == 200, cancelled.text
        # The delivery was recorded with the status change, so the answer already shows it.
        assert len(cancelled.json()["webhook"]["deliveries"]) == 1

        job = await _settled(client, token, submitted["id"])
        assert job["webhook"]["deliveries"][0]["status"] == "delivered"
        request = route.calls.last.request
        assert request.headers["X-Jobgate-Event"] == "job.cancelled"
        assert json.loads(request.content)["status"] == "cancelled"

    async def test_a_purge_owes_one_delivery_per_hooked_job(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq_redis: ArqRedis,
        worker: Worker,
    ) -> None:
        route = receiver.post(HOOK_URL).respond(200)
        tenant_id, token = await make_tenant(sessionmaker)
        later = {"delay_seconds": 600}
        hooked = [
            await submit(
                client, token, "echo", {"message": str(n)}, later | {"webhook_url": HOOK_URL}
            )
            for n in range(2)
        ]
        await submit(client, token, "echo", {"message": "plain"}, later)

        async with sessionmaker() as session:
            purged = await control.purge_waiting(session, arq_redis, tenant_id=uuid.UUID(tenant_id))
        assert purged == 3

        for job in hooked:
            await _settled(client, token, job["id"])
        assert route.call_count == 2
        sent = {json.loads(call.request.content)["id"] for call in route.calls}
        assert sent == {job["id"] for job in hooked}
        assert {call.request.headers["X-Jobgate-Event"] for call in route.calls} == {
            "job.cancelled"
        }


class TestVisibility:
    async def test_deliveries_show_on_the_job_and_in_lists(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        receiver.post(HOOK_URL).respond(200)
        _, token = await make_tenant(sessionmaker)
        hooked = await submit(client, token, "echo", {"message": "a"}, {"webhook_url": HOOK_URL})
        plain = await submit(client, token, "echo", {"message": "b"})
        job = await _settled(client, token, hooked["id"])
        await wait_for_status(client, token, plain["id"], "succeeded")

        page = (await client.get("/jobs", headers=auth(token))).json()
        by_id = {item["id"]: item for item in page["items"]}
        assert by_id[hooked["id"]]["webhook"] == job["webhook"]
        assert by_id[plain["id"]]["webhook"] is None

    async def test_another_tenant_sees_no_delivery(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        receiver.post(HOOK_URL).respond(200)
        _, token = await make_tenant(sessionmaker, "acme")
        _, other = await make_tenant(sessionmaker, "globex")
        hooked = await submit(client, token, "echo", {"message": "a"}, {"webhook_url": HOOK_URL})
        await _settled(client, token, hooked["id"])
        response = await client.get(f"/jobs/{hooked['id']}", headers=auth(other))
        assert response.status_code == 404


class TestSubmitValidation:
    @pytest.mark.parametrize(
        "url",
        [
            pytest.param("ftp://hooks.example.test/x", id="scheme"),
            pytest.param("hooks.example.test/x", id="relative"),
            pytest.param("https://", id="no-host"),
            pytest.param("https://hooks.example.test/" + "a" * 2048, id="too-long"),
            pytest.param(42, id="not-a-string"),
        ],
    )
    async def test_an_invalid_webhook_url_is_422(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], url: object
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}, "options": {"webhook_url": url}},
            headers=auth(token),
        )
        assert ["body", "options", "webhook_url"] in error_locations(response)
        listed = (await client.get("/jobs", headers=auth(token))).json()
        assert listed["items"] == []  # nothing stored

    async def test_http_and_https_urls_are_accepted(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        for url in ("http://hooks.example.test:8080/a?b=c", HOOK_URL):
            job = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": url})
            assert job["webhook"]["url"] == url

    async def test_a_re_run_keeps_the_webhook_url(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        options = {"webhook_url": HOOK_URL, "delay_seconds": 600}
        job = await submit(client, token, "echo", {"message": "x"}, options)
        assert (await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))).is_success
        rerun = await client.post(f"/jobs/{job['id']}/retry", headers=auth(token))
        assert rerun.status_code == 201, rerun.text
        assert rerun.json()["webhook"] == {"url": HOOK_URL, "deliveries": []}


class TestSecretRotation:
    async def test_without_the_operator_token_is_401(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        response = await client.post(
            f"/admin/tenants/{tenant_id}/webhook-secret", headers=auth(token)
        )
        assert_problem(response, 401, "unauthenticated")

    async def test_an_unknown_tenant_is_404(
        self, client: httpx.AsyncClient, operator: dict[str, str]
    ) -> None:
        response = await client.post("/admin/tenants/nobody/webhook-secret", headers=operator)
        assert_problem(response, 404, "tenant-not-found")

    async def test_rotating_changes_the_signature(
        self,
        receiver: respx.MockRouter,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        operator: dict[str, str],
        worker: Worker,
    ) -> None:
        route = receiver.post(HOOK_URL).respond(200)
        created = await client.post("/admin/tenants", json={"name": "acme"}, headers=operator)
        assert created.status_code == 201, created.text
        token, old_secret = created.json()["api_key"], created.json()["webhook_secret"]
        first = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": HOOK_URL})
        await _settled(client, token, first["id"])
        first_request = route.calls.last.request
        assert verify_signature(
            old_secret, first_request.content, first_request.headers["X-Jobgate-Signature"]
        )

        rotated = await client.post("/admin/tenants/acme/webhook-secret", headers=operator)
        assert rotated.status_code == 200, rotated.text
        assert set(rotated.json()) == {"tenant", "webhook_secret"}
        new_secret = rotated.json()["webhook_secret"]
        assert new_secret != old_secret
        assert new_secret == await _secret(sessionmaker, rotated.json()["tenant"]["id"])

        second = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": HOOK_URL})
        await _settled(client, token, second["id"])
        request = route.calls.last.request
        signature = request.headers["X-Jobgate-Signature"]
        assert verify_signature(new_secret, request.content, signature)
        assert not verify_signature(old_secret, request.content, signature)


class TestSigning:
    def test_verify_signature(self) -> None:
        body = b'{"id": "1"}'
        signature = sign("s3cret", body)
        assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
        assert verify_signature("s3cret", body, signature)
        assert not verify_signature("other", body, signature)
        assert not verify_signature("s3cret", body + b" ", signature)
        assert not verify_signature("s3cret", body, signature.removeprefix("sha256="))
        assert not verify_signature("s3cret", body, None)

    def test_backoff_doubles_and_is_capped(self) -> None:
        policy = WebhookSettings(backoff_base_seconds=5, backoff_max_seconds=3600)
        delays = [deliveries.backoff_seconds(n, policy) for n in range(1, 12)]
        assert delays[:4] == [5, 10, 20, 40]
        assert max(delays) == 3600


class TestClaims:
    async def test_two_workers_never_claim_the_same_delivery(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """No worker runs here: the claims are made by hand, the first held open."""
        _, token = await make_tenant(sessionmaker)
        options = {"webhook_url": HOOK_URL, "delay_seconds": 600}
        job = await submit(client, token, "echo", {"message": "x"}, options)
        assert (await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))).is_success

        async with sessionmaker() as first, sessionmaker() as second:
            claimed = await deliveries.claim_due(first, capacity=ROOMY, lease_seconds=60)
            assert [outgoing.job.id for outgoing in claimed] == [uuid.UUID(job["id"])]
            # While the first claim's transaction is open its row is locked: skipped, no wait.
            assert (
                await asyncio.wait_for(
                    deliveries.claim_due(second, capacity=ROOMY, lease_seconds=60), timeout=2
                )
                == []
            )
            await second.commit()
            await first.commit()
            # Committed, the lease keeps it away from everyone until it ends.
            assert await deliveries.claim_due(second, capacity=ROOMY, lease_seconds=60) == []
            await second.commit()

    async def test_a_claim_takes_every_tenant_in_turn_within_the_caps(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq_redis: ArqRedis,
    ) -> None:
        """A's five deliveries are due before B's one; B still gets the second slot."""
        owed: dict[str, uuid.UUID] = {}
        for name, count in (("a", 5), ("b", 1)):
            tenant_id, token = await make_tenant(sessionmaker, name)
            options = {"webhook_url": HOOK_URL, "delay_seconds": 600}
            for n in range(count):
                await submit(client, token, "echo", {"message": str(n)}, options)
            owed[name] = uuid.UUID(tenant_id)
            async with sessionmaker() as session:
                await control.purge_waiting(session, arq_redis, tenant_id=owed[name])

        def tenants(claimed: list[deliveries.Outgoing]) -> list[uuid.UUID]:
            return [outgoing.job.tenant_id for outgoing in claimed]

        async with sessionmaker() as session:
            two = deliveries.Capacity(slots=2, per_tenant=3, per_host=10)
            claimed = await deliveries.claim_due(session, capacity=two, lease_seconds=60)
            assert tenants(claimed) == [owed["a"], owed["b"]]
            assert {outgoing.host for outgoing in claimed} == {"hooks.example.test"}
            # A holds one already: with a cap of 3 it gets two more, however many slots are free.
            held = deliveries.Capacity(slots=10, per_tenant=3, per_host=10, tenants={owed["a"]: 1})
            claimed = await deliveries.claim_due(session, capacity=held, lease_seconds=60)
            assert tenants(claimed) == [owed["a"], owed["a"]]
            # The host is at its cap: nothing is claimed for it.
            busy = deliveries.Capacity(
                slots=10, per_tenant=10, per_host=3, hosts={"hooks.example.test": 3}
            )
            assert await deliveries.claim_due(session, capacity=busy, lease_seconds=60) == []
            await session.commit()
