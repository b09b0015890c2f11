"""`GET /jobs/{id}/events`: a job's status and progress as Server-Sent Events.

httpx's ASGITransport hands the body over only once the app is done, so every stream read
here ends (terminal status) or is bounded by a timeout; the disconnect test speaks ASGI itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from arq.worker import Worker
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import QueuePool
from starlette.types import Message

from gateway.app import create_app
from gateway.deps import Resources
from shared.settings import Settings
from shared.tenants.apikeys import Scope
from tests.conftest import ClientFactory, WorkerFactory
from tests.factories import auth, make_api_key, make_tenant, submit, wait_for_status
from tests.gateway.problem_checks import assert_problem, error_locations
from tests.polling import poll_until

STREAM_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class SseEvent:
    name: str
    id: str
    job: dict[str, Any]


def parse_sse(lines: Iterable[str]) -> list[SseEvent]:
    """Events of an SSE body, by the WHATWG rules we rely on (comments are skipped)."""
    events: list[SseEvent] = []
    fields: dict[str, list[str]] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                events.append(
                    SseEvent(
                        name=fields.get("event", ["message"])[-1],
                        id=fields.get("id", [""])[-1],
                        job=json.loads("\n".join(fields["data"])),
                    )
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    assert not fields, f"unterminated event: {fields}"
    return events


async def read_events(
    client: httpx.AsyncClient, token: str, job_id: str, *, timeout: float = STREAM_TIMEOUT_SECONDS
) -> list[SseEvent]:
    """Open the job's stream and read it to its end, which must come within `timeout`."""
    async with (
        asyncio.timeout(timeout),
        client.stream("GET", f"/jobs/{job_id}/events", headers=auth(token)) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-request-id"]
        lines = [line async for line in response.aiter_lines()]
    return parse_sse(lines)


def assert_well_formed(events: list[SseEvent], job_id: str) -> None:
    """Numbered 1, 2, ...; every event is the job; the first names its status; one terminal."""
    assert events, "no events"
    assert [event.id for event in events] == [str(n) for n in range(1, len(events) + 1)]
    assert all(event.job["id"] == job_id for event in events)
    assert all(event.name in {"status", "progress"} for event in events)
    assert events[0].name == "status"
    assert events[-1].job["status"] in {"succeeded", "failed", "cancelled"}
    assert all(event.job["status"] not in {"succeeded", "failed"} for event in events[:-1])
    for before, after in itertools.pairwise(events):
        if after.name == "progress":
            assert after.job["status"] == before.job["status"]
            assert after.job["progress"] != before.job["progress"]
        else:
            assert after.job["status"] != before.job["status"]


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A gateway whose resources the test can reach, lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def resources_of(app: FastAPI) -> Resources:
    resources: Resources = app.state.resources
    return resources


def client_of(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://jobgate.test")


def checked_out(resources: Resources) -> int:
    """Connections of the gateway's pool in use right now."""
    return cast(QueuePool, resources.engine.pool).checkedout()


class TestStreamJobEvents:
    async def test_without_key_is_401(self, client: httpx.AsyncClient, token: str) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        response = await client.get(f"/jobs/{job['id']}/events")
        assert_problem(response, 401, "unauthenticated")

    async def test_key_without_read_scope_is_403(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, _ = await make_tenant(sessionmaker)
        submit_only = await make_api_key(sessionmaker, tenant_id, Scope.SUBMIT)
        job = await submit(client, submit_only, "echo", {"message": "hi"})
        response = await client.get(f"/jobs/{job['id']}/events", headers=auth(submit_only))
        body = assert_problem(response, 403, "forbidden")
        assert "jobs:read" in body["detail"]

    async def test_other_tenants_job_is_404_like_a_missing_one(
        self, client: httpx.AsyncClient, token: str, other_token: str
    ) -> None:
        theirs = await submit(client, other_token, "echo", {"message": "secret"})
        foreign = await client.get(f"/jobs/{theirs['id']}/events", headers=auth(token))
        missing = await client.get(f"/jobs/{uuid.uuid4()}/events", headers=auth(token))
        foreign_body = assert_problem(foreign, 404, "job-not-found")
        missing_body = assert_problem(missing, 404, "job-not-found")
        assert foreign_body["detail"] == missing_body["detail"]
        assert "secret" not in foreign.text

    async def test_non_uuid_id_is_422(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.get("/jobs/not-a-uuid/events", headers=auth(token))
        assert error_locations(response) == [["path", "job_id"]]

    async def test_streams_status_and_progress_until_the_job_succeeds(
        self, client: httpx.AsyncClient, token: str, worker: Worker
    ) -> None:
        job = await submit(client, token, "sleep", {"seconds": 1, "steps": 4})
        events = await read_events(client, token, job["id"])

        assert_well_formed(events, job["id"])
        statuses = [event.job["status"] for event in events if event.name == "status"]
        assert statuses[0] in {"queued", "running"}
        assert statuses[-2:] == ["running", "succeeded"]
        progress_events = [event for event in events if event.name == "progress"]
        assert {event.job["progress"]["current"] for event in progress_events} >= {1, 2, 3}
        assert all(event.job["progress"]["total"] == 4 for event in progress_events)
        seen = [event.job["progress"]["current"] for event in events if event.job["progress"]]
        assert seen == sorted(seen), seen
        assert sorted(set(seen)) == [1, 2, 3, 4], seen
        final = events[-1].job
        assert final["result"]["slept"] >= 1
        assert final["progress"]["current"] == 4
        response = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        assert final == response.json()

    async def test_finished_job_gives_one_event_and_ends(
        self, client: httpx.AsyncClient, token: str, worker: Worker
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        done = await wait_for_status(client, token, job["id"], "succeeded", timeout=10)
        events = await read_events(client, token, job["id"], timeout=2)
        assert [(event.name, event.id) for event in events] == [("status", "1")]
        assert events[0].job == done

    async def test_cancelled_job_ends_the_stream(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})  # no worker: stays queued
        reading = asyncio.create_task(read_events(client, token, job["id"]))
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert response.status_code == 200, response.text
        events = await reading
        assert_well_formed(events, job["id"])
        assert [event.job["status"] for event in events][-1] == "cancelled"

    async def test_terminal_event_follows_the_change_promptly(
        self, make_client: ClientFactory, token: str, worker: Worker
    ) -> None:
        # With re-reads 30 s apart, only the notification can deliver the events in time.
        client = await make_client(wait_recheck_seconds=30)
        job = await submit(client, token, "sleep", {"seconds": 0.5, "steps": 2})
        events = await read_events(client, token, job["id"], timeout=5)
        ended_at = datetime.now(UTC)
        assert_well_formed(events, job["id"])
        final = events[-1].job
        assert final["status"] == "succeeded"
        lag = (ended_at - datetime.fromisoformat(final["finished_at"])).total_seconds()
        assert lag < 1, f"the terminal event came {lag:.2f} s after the job finished"

    async def test_re_reads_on_a_timer_when_notifications_are_lost(
        self, app: FastAPI, start_worker: WorkerFactory, token: str
    ) -> None:
        resources = resources_of(app)
        await resources.events.close()  # as if the LISTEN connection were down
        async with client_of(app) as client:
            job = await submit(client, token, "sleep", {"seconds": 0.3, "steps": 1})
            await start_worker()
            events = await read_events(client, token, job["id"])
        assert_well_formed(events, job["id"])
        assert events[-1].job["status"] == "succeeded"

    async def test_open_stream_holds_no_connection_and_stops_on_disconnect(
        self, app: FastAPI, token: str
    ) -> None:
        resources = resources_of(app)
        async with client_of(app) as client:
            job = await submit(client, token, "echo", {"message": "hi"})  # no worker: queued
        sent: list[Message] = []
        first_event, disconnected = asyncio.Event(), asyncio.Event()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and b"event: status" in message["body"]:
                first_event.set()

        path = f"/jobs/{job['id']}/events"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"jobgate.test"), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 123),
            "server": ("jobgate.test", 80),
        }
        serving = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(first_event.wait(), STREAM_TIMEOUT_SECONDS)
        # Between reads (re-read every 0.5 s here) the stream gives its connection back.
        await poll_until(lambda: checked_out(resources) == 0, timeout=2, what="pool idle")

        disconnected.set()
        await asyncio.wait_for(serving, 2)
        assert sent[0]["status"] == 200
        assert checked_out(resources) == 0
        body = b"".join(message.get("body", b"") for message in sent[1:]).decode()
        first = parse_sse(body.splitlines())[0]
        assert (first.name, first.job["status"]) == ("status", "queued")


class TestJobEventsFanOut:
    async def test_a_waiter_for_some_statuses_wakes_only_for_them_or_for_news_that_does_not_say(
        self, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        events = resources_of(app).events
        await poll_until(lambda: events.is_listening, what="the gateway listening")
        job_id = uuid.uuid4()

        async def announce(payload: str) -> None:
            async with sessionmaker() as session:
                await session.execute(text("SELECT pg_notify('jobgate_job', :p)"), {"p": payload})
                await session.commit()

        async with (
            events.watch(job_id, statuses={"succeeded"}) as ended,
            events.watch(job_id) as changed,
        ):
            await announce(f"{job_id}:running")
            await asyncio.wait_for(changed.wait(), 5)
            assert not ended.is_set()
            await announce(str(job_id))  # as the trigger said it before migration 0007
            await asyncio.wait_for(ended.wait(), 5)
            ended.clear()
            await announce(f"{job_id}:succeeded")
            await asyncio.wait_for(ended.wait(), 5)
