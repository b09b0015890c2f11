"""One trace from the caller to the worker: request span → submit span → job run span.

Real gateway (in-process ASGI) and real ARQ worker, spans caught by the SDK's in-memory
exporter on the process's tracer provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from arq.worker import Worker
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import create_app
from shared import tracing
from shared.models import Job
from shared.settings import Settings, WebhookSettings
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.log_capture import json_lines, rendered_logs
from tests.polling import poll_job, poll_until

HOOK_URL = "https://hooks.example.test/traced"
CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
STORED_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
STORED_SPAN_ID = "b7ad6b7169203331"
EXPORTED = InMemorySpanExporter()
_watched_providers: set[int] = set()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    fast = WebhookSettings(
        poll_interval_seconds=0.02,
        backoff_base_seconds=0.01,
        allowed_hosts=["hooks.example.test"],  # respx answers for it; it resolves nowhere
    )
    return settings.model_copy(
        update={"tracing": True, "tracing_exporter": "none", "log_json": True, "webhooks": fast}
    )


@pytest.fixture(autouse=True)
def spans(settings: Settings) -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter, on this process's provider, emptied; tracing off afterwards."""
    tracing.configure_tracing(settings, service_name="jobgate-test")
    provider = tracing.tracer_provider()
    assert provider is not None
    if id(provider) not in _watched_providers:  # a provider's processors cannot be removed
        provider.add_span_processor(SimpleSpanProcessor(EXPORTED))
        _watched_providers.add(id(provider))
    EXPORTED.clear()
    yield EXPORTED
    tracing.configure_tracing(settings.model_copy(update={"tracing": False}), service_name="x")


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def _hex(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")


def _ancestors(span: ReadableSpan, exporter: InMemorySpanExporter) -> set[int]:
    """The span ids above `span`, as far as the exporter has the spans."""
    by_id = {other.context.span_id: other for other in exporter.get_finished_spans()}
    found: set[int] = set()
    parent = span.parent
    while parent is not None and parent.span_id not in found:
        found.add(parent.span_id)
        above = by_id.get(parent.span_id)
        parent = above.parent if above is not None else None
    return found


async def _wait_for_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    await poll_until(lambda: bool(_named(exporter, name)), what=f"span {name!r} ended")
    (span,) = _named(exporter, name)
    return span


async def _traceparent_of(sessionmaker: async_sessionmaker[AsyncSession], job_id: str) -> Any:
    async with sessionmaker() as session:
        return await session.scalar(select(Job.traceparent).where(Job.id == uuid.UUID(job_id)))


async def test_the_request_span_continues_the_callers_trace(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spans: InMemorySpanExporter,
) -> None:
    _, key = await make_tenant(sessionmaker)
    response = await client.post(
        "/jobs/echo",
        json={"args": {"message": "hi"}},
        headers={"Authorization": f"Bearer {key}", "traceparent": CALLER},
    )
    assert response.status_code == 202, response.text
    request = await _wait_for_span(spans, "POST /jobs/echo")
    assert request.kind == SpanKind.SERVER
    assert _hex(request.context.trace_id, 32) == CALLER_TRACE_ID
    assert request.parent is not None and _hex(request.parent.span_id, 16) == CALLER_SPAN_ID
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202


async def test_a_job_run_is_a_child_of_the_stored_traceparent(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    spans: InMemorySpanExporter,
) -> None:
    """The worker side alone: whatever `traceparent` the row holds, each run continues it.

    Also the webhook sender's span and the header it sends, and the log lines' trace ids.
    """
    tenant_id, key = await make_tenant(sessionmaker)
    with respx.mock(assert_all_called=False) as receiver:
        hook = receiver.post(HOOK_URL).respond(204)
        ok = await submit(client, key, "echo", {"message": "hi"}, {"webhook_url": HOOK_URL})
        bad = await submit(client, key, "flaky", {"fail_times": 1, "permanent": True})
        stored = f"00-{STORED_TRACE_ID}-{STORED_SPAN_ID}-01"
        async with sessionmaker() as session:  # before any worker runs
            await session.execute(
                update(Job)
                .where(Job.id.in_([uuid.UUID(ok["id"]), uuid.UUID(bad["id"])]))
                .values(traceparent=stored)
            )
            await session.commit()
        with rendered_logs() as logs:
            await start_worker()
            await wait_for_status(client, key, ok["id"], "succeeded")
            await wait_for_status(client, key, bad["id"], "failed")
            await poll_job(client, key, ok["id"], lambda job: hook.called)
            webhook = await _wait_for_span(spans, "webhook echo")
        run = await _wait_for_span(spans, "run echo")
        failed = await _wait_for_span(spans, "run flaky")

    for span in (run, failed, webhook):
        assert _hex(span.context.trace_id, 32) == STORED_TRACE_ID
        assert span.parent is not None and _hex(span.parent.span_id, 16) == STORED_SPAN_ID
    assert run.kind == SpanKind.CONSUMER
    assert dict(run.attributes or {}) == {
        "jobgate.job.id": ok["id"],
        "jobgate.job.name": "echo",
        "jobgate.job.queue": "default",
        "jobgate.job.attempt": 1,
        "jobgate.tenant.id": tenant_id,
        "jobgate.job.outcome": "succeeded",
    }
    assert run.status.status_code == StatusCode.UNSET
    assert (failed.attributes or {})["jobgate.job.outcome"] == "failed"
    assert failed.status.status_code == StatusCode.ERROR
    (event,) = [event for event in failed.events if event.name == "exception"]
    assert (event.attributes or {})["exception.type"] == "permanent"
    # The receiver may continue the trace: the header names the webhook span.
    sent = hook.calls.last.request.headers["traceparent"]
    assert sent == f"00-{STORED_TRACE_ID}-{_hex(webhook.context.span_id, 16)}-01"
    # Log lines of the run name its trace and span.
    (succeeded,) = [line for line in json_lines(logs) if line["event"] == "job.succeeded"]
    assert succeeded["trace_id"] == STORED_TRACE_ID
    assert succeeded["span_id"] == _hex(run.context.span_id, 16)


async def test_an_aborted_run_ends_its_span_as_interrupted(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: Worker,
    spans: InMemorySpanExporter,
) -> None:
    _, key = await make_tenant(sessionmaker)
    job = await submit(client, key, "sleep", {"seconds": 30})
    await poll_job(client, key, job["id"], lambda job: job["status"] == "running")
    cancelled = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(key))
    assert cancelled.status_code == 202, cancelled.text
    run = await _wait_for_span(spans, "run sleep")
    assert (run.attributes or {})["jobgate.job.outcome"] == "interrupted"
    assert run.status.status_code == StatusCode.UNSET  # stopping on request is no error


async def test_one_trace_from_the_caller_through_submit_to_the_job_run(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    spans: InMemorySpanExporter,
) -> None:
    _, key = await make_tenant(sessionmaker)
    await start_worker()
    response = await client.post(
        "/jobs/echo",
        json={"args": {"message": "hi"}},
        headers={"Authorization": f"Bearer {key}", "traceparent": CALLER},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    await wait_for_status(client, key, job_id, "succeeded")
    request = await _wait_for_span(spans, "POST /jobs/echo")
    submitted = await _wait_for_span(spans, "submit echo")
    run = await _wait_for_span(spans, "run echo")

    for span in (request, submitted, run):
        assert _hex(span.context.trace_id, 32) == CALLER_TRACE_ID
    assert submitted.kind == SpanKind.PRODUCER
    # The submit span sits in the request's (directly, or under FastAPI's operation spans).
    assert request.context.span_id in _ancestors(submitted, spans)
    assert run.parent is not None and run.parent.span_id == submitted.context.span_id
    stored = await _traceparent_of(sessionmaker, job_id)
    assert stored == f"00-{CALLER_TRACE_ID}-{_hex(submitted.context.span_id, 16)}-01"


async def test_with_tracing_off_nothing_is_recorded_and_no_traceparent_stored(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    spans: InMemorySpanExporter,
) -> None:
    """Off, even with a provider left in the process by an earlier configuration."""
    off = settings.model_copy(update={"tracing": False})
    app = create_app(off)
    assert tracing.tracer_provider() is None
    assert tracing.current_traceparent() is None
    _, key = await make_tenant(sessionmaker)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as http,
    ):
        await start_worker(settings=off)
        job = await submit_traced(http, key)
        await wait_for_status(http, key, job["id"], "succeeded")
    assert spans.get_finished_spans() == ()
    assert await _traceparent_of(sessionmaker, job["id"]) is None


async def submit_traced(http: httpx.AsyncClient, key: str) -> dict[str, Any]:
    """An echo job submitted by a caller that sends a `traceparent`."""
    response = await http.post(
        "/jobs/echo",
        json={"args": {"message": "hi"}},
        headers={"Authorization": f"Bearer {key}", "traceparent": CALLER},
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job
