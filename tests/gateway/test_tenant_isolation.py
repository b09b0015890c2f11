"""The tenant walk: every `/jobs*` route, called by another tenant, behaves as if A did not exist.

Routes come from the app's route table, so a new `/jobs` route is walked (or fails the test
until it is placed) without anyone remembering to list it here.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.app import create_app
from shared.settings import Settings
from tests.factories import auth, submit, wait_for_status
from tests.gateway.problem_checks import assert_problem

pytestmark = pytest.mark.slow

# Bodies for `{job_id}` routes that read one; a new route that needs another is added here.
BODIES: dict[tuple[str, str], Any] = {}
# Query strings worth trying on top of the bare call (a long-poll must not wait for a 404).
QUERIES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/jobs/{job_id}"): [{}, {"wait": 2}],
}
SECRET_ARG = "tenant-a-private-0f1e2d"


@dataclass(frozen=True)
class JobRoutes:
    """The app's `/jobs*` routes, sorted by how the walk exercises them."""

    by_id: set[tuple[str, str]]
    listing: set[tuple[str, str]]
    submits: set[tuple[str, str]]


def _job_routes(settings: Settings) -> JobRoutes:
    app = create_app(settings)
    # `app.routes` holds included routers as such (FastAPI >= 0.165); this walks into them.
    routes = [
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        and route.path is not None
        and route.path.startswith("/jobs")
        for method in sorted(route.methods or ())
    ]
    by_id = {(method, path) for method, path in routes if "{job_id}" in path}
    listing = {(method, path) for method, path in routes if path == "/jobs"}
    submits = {
        (method, path)
        for method, path in routes
        if method == "POST"
        and path.removesuffix("/batch").count("/") == 2
        and "{job_id}" not in path
    }
    unplaced = set(routes) - by_id - listing - submits
    assert not unplaced, f"new /jobs routes the tenant walk does not cover yet: {unplaced}"
    return JobRoutes(by_id=by_id, listing=listing, submits=submits)


@dataclass(frozen=True)
class TenantA:
    token: str
    jobs: dict[str, dict[str, Any]]
    """One job per state reached: status -> job as A reads it."""


@pytest.fixture
async def tenant_a(client: httpx.AsyncClient, token: str, worker: Worker) -> AsyncIterator[TenantA]:
    """A's jobs: queued/scheduled (delayed), running, succeeded, failed and cancelled."""
    jobs: dict[str, dict[str, Any]] = {}
    labels = {"owner": "a"}
    succeeded = await submit(client, token, "echo", {"message": SECRET_ARG}, {"labels": labels})
    failed = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
    running = await submit(client, token, "sleep", {"seconds": 20, "steps": 20})
    scheduled = await submit(client, token, "echo", {"message": SECRET_ARG}, {"delay_seconds": 600})
    cancelled = await submit(client, token, "echo", {"message": "x"}, {"delay_seconds": 600})
    response = await client.post(f"/jobs/{cancelled['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.text
    jobs["succeeded"] = await wait_for_status(client, token, succeeded["id"], "succeeded")
    jobs["failed"] = await wait_for_status(client, token, failed["id"], "failed")
    jobs["running"] = await wait_for_status(client, token, running["id"], "running")
    jobs["scheduled"] = scheduled
    jobs["cancelled"] = response.json()
    yield TenantA(token=token, jobs=jobs)
    await client.post(f"/jobs/{running['id']}/cancel", headers=auth(token))


async def _queued_job(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """A job that stays queued: on the email queue, which no test worker here consumes."""
    return await submit(
        client, token, "send_email", {"to": "a@example.com", "subject": "s", "body": "b"}
    )


def _shape(response: httpx.Response, job_id: str) -> dict[str, Any]:
    """What a caller can compare between two 404s, with the asked-for id blanked out."""
    body = assert_problem(response, 404, "job-not-found")
    blanked = {key: str(value).replace(job_id, "<id>") for key, value in body.items()}
    return {"body": blanked, "headers": sorted(set(response.headers) - {"x-request-id"})}


async def _call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    job_id: str,
    token: str,
    query: dict[str, Any],
) -> httpx.Response:
    body = BODIES.get((method, path))
    return await client.request(
        method,
        path.replace("{job_id}", job_id),
        params=query,
        json=body,
        headers=auth(token),
    )


async def _read_as_a(client: httpx.AsyncClient, a: TenantA) -> dict[str, dict[str, Any]]:
    seen = {}
    for state, job in a.jobs.items():
        response = await client.get(f"/jobs/{job['id']}", headers=auth(a.token))
        assert response.status_code == 200, response.text
        seen[state] = response.json()
        seen[state].pop("progress")  # the running job moves on by itself
    return seen


class TestTenantWalk:
    async def test_every_job_route_answers_404_for_another_tenants_job(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        tenant_a: TenantA,
        other_token: str,
    ) -> None:
        routes = _job_routes(settings)
        assert {
            ("GET", "/jobs/{job_id}"),
            ("GET", "/jobs/{job_id}/events"),
            ("POST", "/jobs/{job_id}/cancel"),
            ("POST", "/jobs/{job_id}/retry"),
        } <= routes.by_id
        jobs = {**tenant_a.jobs, "queued": await _queued_job(client, tenant_a.token)}
        before = await _read_as_a(client, tenant_a)
        exercised: set[tuple[str, str]] = set()
        for method, path in sorted(routes.by_id):
            for query in QUERIES.get((method, path), [{}]):
                missing_id = str(uuid.uuid4())
                missing = await _call(client, method, path, missing_id, other_token, query)
                expected = _shape(missing, missing_id)
                for state, job in jobs.items():
                    foreign = await _call(client, method, path, job["id"], other_token, query)
                    assert _shape(foreign, job["id"]) == expected, (method, path, query, state)
                    assert SECRET_ARG not in foreign.text
                    assert foreign.elapsed.total_seconds() < 1, "a 404 must not long-poll"
                exercised.add((method, path))
        assert exercised == routes.by_id
        # B's cancel and retry changed nothing of A's.
        assert await _read_as_a(client, tenant_a) == before

    async def test_listing_never_shows_another_tenants_jobs(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        tenant_a: TenantA,
        other_token: str,
    ) -> None:
        assert _job_routes(settings).listing == {("GET", "/jobs")}
        own = await submit(client, other_token, "echo", {"message": "b's"})
        a_listing = await client.get("/jobs", params={"limit": 1}, headers=auth(tenant_a.token))
        a_cursor = a_listing.json()["next_cursor"]
        assert a_cursor is not None
        filters: list[dict[str, Any]] = [
            {},
            {"status": list(tenant_a.jobs)},
            {"name": ["echo", "flaky", "sleep"]},
            {"label": "owner:a"},
            {"created_after": "2000-01-01T00:00:00Z"},
            {"limit": 200},
            {"cursor": a_cursor},
        ]
        for params in filters:
            response = await client.get("/jobs", params=params, headers=auth(other_token))
            assert response.status_code == 200, (params, response.text)
            ids = {item["id"] for item in response.json()["items"]}
            assert ids <= {own["id"]}, params
            assert SECRET_ARG not in response.text

    async def test_submits_never_touch_another_tenants_jobs(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        tenant_a: TenantA,
        other_token: str,
    ) -> None:
        submits = _job_routes(settings).submits
        assert ("POST", "/jobs/echo") in submits and ("POST", "/jobs/echo/batch") in submits
        before = await _read_as_a(client, tenant_a)
        key = {"Idempotency-Key": "shared-key"}
        mine = await client.post(
            "/jobs/echo",
            json={"args": {"message": SECRET_ARG}},
            headers={**auth(tenant_a.token), **key},
        )
        assert mine.status_code == 202, mine.text
        # The same key and args from B: a new job of B's, never a replay of A's (nor a 409).
        theirs = await client.post(
            "/jobs/echo",
            json={"args": {"message": SECRET_ARG}},
            headers={**auth(other_token), **key},
        )
        assert theirs.status_code == 202, theirs.text
        assert theirs.json()["id"] != mine.json()["id"]
        batch = await client.post(
            "/jobs/echo/batch",
            json={"jobs": [{"args": {"message": "b"}}] * 3},
            headers=auth(other_token),
        )
        assert batch.status_code == 202, batch.text
        b_ids = {job["id"] for job in batch.json()["jobs"]} | {theirs.json()["id"]}
        listed = await client.get("/jobs", params={"limit": 200}, headers=auth(other_token))
        assert {item["id"] for item in listed.json()["items"]} == b_ids
        after = await _read_as_a(client, tenant_a)
        assert after == before
        a_listed = await client.get("/jobs", params={"limit": 200}, headers=auth(tenant_a.token))
        assert not b_ids & {item["id"] for item in a_listed.json()["items"]}
