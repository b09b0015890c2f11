"""Start deadlines against real workers: a job past its deadline ends `expired` and its code never
runs, whether a worker picks it up late (the claim) or none does (the sweep, e.g. on a paused
queue); a retry past the deadline expires the job; each expiry is counted, owes the job's
webhook, and fails its workflow."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import EchoArgs, EchoResult
from shared.db import create_engine
from shared.jobs.retention import Retention
from shared.keys import job_key, queue_key
from shared.settings import Settings, WebhookSettings
from tests.bindings import start_worker_with_binding
from tests.conftest import ADMIN_TOKEN, WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.polling import poll_until, reconciler_pass_began
from tests.worker.test_job_metrics import Counts
from worker.binding import Binding, Hooks
from worker.context import JobContext, JobOutcome
from worker.deadlines import DeadlineSweep
from worker.reconciler import reconcile_forever

OPERATOR = auth(ADMIN_TOKEN)
HOOK_URL = "https://hooks.example.test/deadlines"
ECHO_LABELS = {"job_type": "echo", "queue": "default"}
EXPIRED_TOTAL = "jobgate_jobs_expired_total"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A reconciler pass (hence a deadline sweep) every 0.2 s; webhooks sent within ms."""
    webhooks = WebhookSettings(
        timeout_seconds=2, backoff_base_seconds=0.01, backoff_max_seconds=0.05,
        poll_interval_seconds=0.02, max_attempts=3,
        allowed_hosts=["hooks.example.test"],  # respx answers for it; it resolves nowhere
    )  # fmt: skip
    return settings.model_copy(
        update={
            "webhooks": webhooks,
            "reconcile_interval_seconds": 0.2,
            "reconcile_grace_seconds": 0,
        }
    )


@pytest.fixture
def receiver() -> Iterator[respx.MockRouter]:
    """Every outbound HTTP request of the test process (the workers' webhooks) lands here."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def ran() -> list[str]:
    """The messages of the echo jobs whose code ran (see `_echo_recording`)."""
    return []


def _echo_recording(ran: list[str]) -> Any:
    def change(binding: Binding) -> Binding:
        async def echo(job: JobContext, args: EchoArgs) -> EchoResult:
            ran.append(args.message)
            return EchoResult(message=args.message)

        return replace(binding, function=echo)

    return change


async def _queue(client: httpx.AsyncClient, action: str) -> None:
    response = await client.post(f"/admin/queues/default/{action}", headers=OPERATOR)
    assert response.status_code == 200, response.text


async def _past(job: dict[str, Any]) -> None:
    """Wait until the job's start deadline has gone by."""
    deadline = datetime.fromisoformat(job["start_by"])
    await poll_until(lambda: datetime.now(UTC) > deadline, what="the deadline went by")


async def test_a_job_a_worker_picks_up_after_its_deadline_never_runs(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
    redis: Redis,
    ran: list[str],
) -> None:
    # No sweep after the first one, at start-up: the claim is what finds the job overdue.
    claiming = settings.model_copy(update={"reconcile_interval_seconds": 3600})
    await start_worker_with_binding(claiming, start_worker, "echo", _echo_recording(ran))
    await reconciler_pass_began(redis)
    _, token = await make_tenant(sessionmaker)
    counts = Counts()
    counts.remember(EXPIRED_TOTAL, **ECHO_LABELS)
    await _queue(client, "pause")
    late = await submit(client, token, "echo", {"message": "late"}, {"start_within_seconds": 0.3})
    in_time = await submit(client, token, "echo", {"message": "in time"})
    await _past(late)
    assert (await client.get(f"/jobs/{late['id']}", headers=auth(token))).json()[
        "status"
    ] == "queued"  # nothing has looked at it yet

    await _queue(client, "resume")
    expired = await wait_for_status(client, token, late["id"], "expired")
    await wait_for_status(client, token, in_time["id"], "succeeded")

    assert ran == ["in time"]
    assert expired["attempts"] == 0 and expired["started_at"] is None
    assert expired["error"]["type"] == "expired"
    await poll_until(lambda: counts.delta(EXPIRED_TOTAL, **ECHO_LABELS) == 1, what="counted")


async def test_a_job_on_a_paused_queue_expires_by_the_sweep_and_its_webhook_says_so(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
    redis: Redis,
    receiver: respx.MockRouter,
    ran: list[str],
) -> None:
    route = receiver.post(HOOK_URL).respond(204)
    await start_worker_with_binding(settings, start_worker, "echo", _echo_recording(ran))
    _, token = await make_tenant(sessionmaker)
    counts = Counts()
    counts.remember(EXPIRED_TOTAL, **ECHO_LABELS)
    await _queue(client, "pause")
    options = {"start_within_seconds": 0.3, "webhook_url": HOOK_URL}
    job = await submit(client, token, "echo", {"message": "never"}, options)

    expired = await wait_for_status(client, token, job["id"], "expired", timeout=5)

    assert expired["attempts"] == 0 and expired["started_at"] is None
    assert expired["error"] == {
        "type": "expired",
        "message": "not started by its start deadline (start_by)",
    }
    # Taken off its queue: a paused queue's depth no longer counts it.
    assert await redis.zcard(queue_key("default")) == 0
    assert not await redis.exists(job_key(job["id"]))
    await poll_until(lambda: route.call_count == 1, what="the webhook was sent")
    request = route.calls.last.request
    assert request.headers["X-Jobgate-Event"] == "job.expired"
    assert json.loads(request.content)["status"] == "expired"
    await poll_until(lambda: counts.delta(EXPIRED_TOTAL, **ECHO_LABELS) == 1, what="counted")

    await _queue(client, "resume")
    check = await submit(client, token, "echo", {"message": "after the resume"})
    await wait_for_status(client, token, check["id"], "succeeded")
    assert ran == ["after the resume"]
    again = await client.get(f"/jobs/{job['id']}", headers=auth(token))
    assert again.json()["status"] == "expired"


async def test_a_retry_that_would_start_after_the_deadline_expires_the_job(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
) -> None:
    outcomes: list[JobOutcome] = []

    async def record(job: JobContext, outcome: JobOutcome) -> None:
        outcomes.append(outcome)

    hooks = Hooks(on_retry=record, on_failure=record)
    await start_worker_with_binding(
        settings, start_worker, "flaky", lambda binding: replace(binding, hooks=hooks)
    )
    _, token = await make_tenant(sessionmaker)
    # flaky retries after about a second: past a deadline of half a second, within one of 30.
    short = await submit(client, token, "flaky", {"fail_times": 1}, {"start_within_seconds": 0.5})
    roomy = await submit(client, token, "flaky", {"fail_times": 1}, {"start_within_seconds": 30})

    expired = await wait_for_status(client, token, short["id"], "expired")
    succeeded = await wait_for_status(client, token, roomy["id"], "succeeded")

    assert expired["attempts"] == 1 and expired["started_at"] is not None
    assert expired["error"]["type"] == "expired"
    assert "would start after its start deadline" in expired["error"]["message"]
    assert "RetryableJobError" in expired["error"]["message"]  # the attempt's own error
    assert succeeded["attempts"] == 2
    await poll_until(lambda: len(outcomes) == 2, what="both hooks ran")
    assert sorted(outcome.status for outcome in outcomes) == ["expired", "retrying"]


async def test_an_expired_step_fails_its_workflow(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    await start_worker()
    _, token = await make_tenant(sessionmaker)
    await _queue(client, "pause")
    chain = {
        "type": "chain",
        "steps": [
            {
                "type": "step",
                "job": "echo",
                "args": {"message": "first"},
                "options": {"start_within_seconds": 0.3},
            },
            {"type": "step", "job": "echo", "args": {"message": "second"}},
        ],
    }
    response = await client.post("/workflows", json={"workflow": chain}, headers=auth(token))
    assert response.status_code == 202, response.text
    workflow_id = response.json()["id"]

    async def workflow() -> dict[str, Any]:
        found = await client.get(f"/workflows/{workflow_id}", headers=auth(token))
        body: dict[str, Any] = found.json()
        return body

    deadline = asyncio.get_running_loop().time() + 5
    while (current := await workflow())["status"] == "running":
        assert asyncio.get_running_loop().time() < deadline, current
        await asyncio.sleep(0.05)
    assert current["status"] == "failed"
    first, second = current["steps"]
    assert first["job"]["status"] == "expired"
    assert second["job"] is None  # never released


@dataclasses.dataclass(frozen=True)
class _WatchedSweep(DeadlineSweep):
    """The sweep, noting each error a pass of it raised (and raising it on)."""

    errors: list[str] = dataclasses.field(default_factory=list)

    async def run(self) -> int:
        try:
            return await super().run()
        except Exception as exc:
            self.errors.append(type(exc).__name__)
            raise


async def test_a_sweep_that_cannot_reach_postgresql_leaves_the_reconciler_running(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], arq_redis: ArqRedis
) -> None:
    unreachable = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    )
    engine = create_engine(unreachable)
    sweep = _WatchedSweep(engine, sessionmaker, arq_redis, Retention(3600, {}), settings)
    passes = asyncio.create_task(
        reconcile_forever(
            sessionmaker,
            arq_redis,
            interval_seconds=0.05,
            grace_seconds=0,
            sweep=sweep,
            settings=settings,
        )
    )
    try:
        # Watched on the sweep itself, not in the logs: structlog's cached loggers make
        # captured logs depend on which test configured logging first.
        await poll_until(
            lambda: sweep.errors.count("DatabaseUnavailable") >= 2,
            what="two passes failed on the sweep, and the loop went on",
        )
        assert not passes.done()
    finally:
        passes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await passes
        await engine.dispose()
