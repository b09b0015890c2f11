"""Every log line carries its context: `request_id` within a request, the job's fields within a run.

A real gateway (in-process ASGI) and a real ARQ worker log as in production (JSON lines, through
`configure_logging`); the lines are parsed back and checked field by field, the standard
library's lines from job code included.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import respx
import structlog
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import create_app
from shared.contracts import EchoArgs
from shared.settings import Settings, WebhookSettings
from tests.bindings import start_worker_with_binding
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.log_capture import json_lines, rendered_logs
from tests.polling import poll_job
from worker.binding import Binding, Hooks
from worker.context import JobContext, JobOutcome

HOOK_URL = "https://hooks.example.test/log-context"
stdlib_log = logging.getLogger("tests.jobcode")
struct_log = structlog.get_logger("tests.jobcode")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    fast = WebhookSettings(
        poll_interval_seconds=0.02,
        backoff_base_seconds=0.01,
        allowed_hosts=["hooks.example.test"],  # respx answers for it; it resolves nowhere
    )
    return settings.model_copy(update={"log_json": True, "webhooks": fast})


async def _log_both_ways(request: Request) -> dict[str, str]:
    """A route that logs through structlog and through the standard library."""
    struct_log.info("route.structlog")
    stdlib_log.warning("route.stdlib")
    return {}


async def _explode(request: Request) -> None:
    raise RuntimeError("a bug")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    app.add_api_route("/jobs-test/log", _log_both_ways, methods=["GET"])
    app.add_api_route("/jobs-test/explode", _explode, methods=["GET"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as http,
    ):
        yield http


@pytest.fixture
def logs(client: httpx.AsyncClient) -> Iterator[io.StringIO]:
    with rendered_logs() as rendered:
        yield rendered


@pytest.fixture
def receiver() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(HOOK_URL).respond(204)
        yield router


async def test_every_line_of_a_request_carries_its_request_id(
    client: httpx.AsyncClient, logs: io.StringIO
) -> None:
    logged = await client.get("/jobs-test/log", headers={"X-Request-ID": "req-log-1"})
    assert logged.status_code == 200
    crashed = await client.get("/jobs-test/explode", headers={"X-Request-ID": "req-crash-1"})
    assert crashed.status_code == 500
    assert crashed.headers["x-request-id"] == "req-crash-1"
    struct_log.info("test.after_requests")

    lines = {line["event"]: line for line in json_lines(logs)}
    assert lines["route.structlog"]["request_id"] == "req-log-1"
    assert lines["route.stdlib"]["request_id"] == "req-log-1"
    # The last-resort 500 runs outside the routes' middleware: it must still know the id.
    assert lines["request.crashed"]["request_id"] == "req-crash-1"
    assert "RuntimeError: a bug" in lines["request.crashed"]["exception"]
    assert "request_id" not in lines["test.after_requests"]  # unbound once the request ends


async def _start_logging_echo(settings: Settings, start_worker: WorkerFactory) -> None:
    """A worker whose `echo` logs both ways (job code and its on_success hook), slowly."""

    def change(binding: Binding) -> Binding:
        original = binding.function

        async def echo(job: JobContext, args: EchoArgs) -> Any:
            stdlib_log.info("job code (stdlib) of %s", job.job_id)
            await asyncio.sleep(0.2)  # the two jobs' runs overlap
            struct_log.info("job.code", said_by=str(job.job_id))
            return await original(job, args)

        async def on_success(job: JobContext, outcome: JobOutcome) -> None:
            struct_log.info("job.hook", said_by=str(job.job_id))

        return replace(binding, function=echo, hooks=Hooks(on_success=on_success))

    await start_worker_with_binding(settings, start_worker, "echo", change)


async def test_every_line_of_a_job_run_carries_the_job_fields(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
    receiver: respx.MockRouter,
    logs: io.StringIO,
) -> None:
    await _start_logging_echo(settings, start_worker)
    acme_id, acme_key = await make_tenant(sessionmaker, "acme")
    globex_id, globex_key = await make_tenant(sessionmaker, "globex")
    jobs = await asyncio.gather(
        submit(client, acme_key, "echo", {"message": "a"}, {"webhook_url": HOOK_URL}),
        submit(client, globex_key, "echo", {"message": "g"}),
    )
    tenants = {jobs[0]["id"]: acme_id, jobs[1]["id"]: globex_id}
    for job, key in zip(jobs, (acme_key, globex_key), strict=True):
        await wait_for_status(client, key, job["id"], "succeeded")
    await poll_job(
        client,
        acme_key,
        jobs[0]["id"],
        lambda job: any(d["status"] == "delivered" for d in job["webhook"]["deliveries"]),
    )

    lines = json_lines(logs)
    for job_id, tenant_id in tenants.items():
        own = [line for line in lines if line.get("job_id") == job_id]
        events = [line["event"] for line in own]
        assert f"job code (stdlib) of {job_id}" in events, events
        for event in ("job.code", "job.succeeded", "job.hook"):
            assert event in events, (event, events)
        # The webhook sender's lines (its own and httpx's) carry no attempt: checked below.
        run = [line for line in own if not _sent_by_webhook_sender(line)]
        for line in run:
            assert line["job_name"] == "echo", line
            assert line["tenant_id"] == tenant_id, line
            assert line["attempt"] == 1, line
            assert "request_id" not in line, line
            # No other job's fields: the two runs overlapped, each kept its own.
            assert line.get("said_by", job_id) == job_id, line
    sent = [line for line in lines if _sent_by_webhook_sender(line)]
    assert {line["event"].split(":")[0] for line in sent} == {"webhook.attempted", "HTTP Request"}
    for line in sent:
        assert (line["job_id"], line["job_name"]) == (jobs[0]["id"], "echo"), line
        assert line["tenant_id"] == acme_id, line
    text = logs.getvalue()
    for secret in (acme_key, globex_key, settings.admin_token.get_secret_value()):  # type: ignore[union-attr]
        assert secret not in text


def _sent_by_webhook_sender(line: dict[str, Any]) -> bool:
    return HOOK_URL in line["event"] or line["event"] == "webhook.attempted"


async def test_console_lines_stay_readable_and_carry_the_fields(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """`jobgate dev` renders console lines (no JSON), with the same bound fields."""
    app = create_app(settings.model_copy(update={"log_json": False}))
    app.add_api_route("/jobs-test/log", _log_both_ways, methods=["GET"])
    transport = httpx.ASGITransport(app=app)
    _, key = await make_tenant(sessionmaker)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as http,
    ):
        with rendered_logs() as rendered:
            response = await http.get(
                "/jobs-test/log", headers={**auth(key), "X-Request-ID": "req-console-1"}
            )
    assert response.status_code == 200
    (line,) = [line for line in rendered.getvalue().splitlines() if "route.stdlib" in line]
    assert not line.lstrip().startswith("{")
    assert "request_id=req-console-1" in line
