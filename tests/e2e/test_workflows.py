"""Workflows end to end, real gateway and workers: seed 004's chain, group and chord, a failure
resumed by a retry, cancel, tenant isolation, and durability (a flushed Redis, a lost advance).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import operator_queries
from shared.jobs.attempt_sql import RanAttempt
from shared.jobs.retention import Retention
from shared.jobs.rows import JobKey
from shared.jobs.status_changes import Success, claim_jobs, record_successes
from shared.models import Job, Workflow
from shared.settings import Settings
from shared.tenants.apikeys import Scope
from tests.conftest import WorkerFactory
from tests.docs_examples import WORKFLOWS
from tests.factories import auth, make_api_key, make_tenant
from tests.workflow_jobs import RUNS, UNREADABLE, WORKFLOW_TYPES
from worker.testing import declared

# docs/workflows.md's examples (a test below checks they are there, word for word as JSON).
CHAIN = {
    "type": "chain",
    "steps": [
        {"type": "step", "job": "process_pst_file", "args": {"pst_file_id": "pst-1"}},
        {
            "type": "step",
            "job": "extract_attachment",
            "args_from": {"attachment_id": "attachment_id"},
        },
        {"type": "step", "job": "index_to_opensearch", "args_from": {"document_id": "document_id"}},
    ],
}
GROUP = {
    "type": "group",
    "steps": [
        {"type": "step", "job": "extract_attachment", "args": {"attachment_id": "att-1"}},
        {"type": "step", "job": "extract_attachment", "args": {"attachment_id": "att-2"}},
        {"type": "step", "job": "extract_attachment", "args": {"attachment_id": "att-3"}},
    ],
}
CHORD = {
    "type": "chord",
    "group": GROUP["steps"],
    "callback": {
        "type": "step",
        "job": "index_to_opensearch",
        "args_from": {"document_ids": "*.document_id"},
    },
}
CHORD_WITH_FAILURES = {
    "type": "chord",
    "include_failures": True,
    "group": GROUP["steps"],
    "callback": {"type": "step", "job": "count_outcomes", "args_from": {"statuses": "*.status"}},
}


@pytest.fixture
def workflow_types() -> Iterator[None]:
    """The seed-like job types, registered for this test only, with fresh counters."""
    RUNS.clear()
    UNREADABLE.clear()
    with declared(*WORKFLOW_TYPES):
        yield


@pytest.fixture
async def tenant(
    workflow_types: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[str, str]:
    return await make_tenant(sessionmaker)


async def submit_workflow(
    client: httpx.AsyncClient, token: str, workflow: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/workflows", json={"workflow": workflow}, headers=auth(token))
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/workflows/{response.json()['id']}"
    body: dict[str, Any] = response.json()
    return body


async def wait_workflow(
    client: httpx.AsyncClient,
    token: str,
    workflow_id: str,
    condition: Any,
    *,
    timeout: float = 10,
) -> dict[str, Any]:
    """Read the workflow until `condition(workflow)` holds (a status string: that status)."""
    check = condition if callable(condition) else (lambda wf: wf["status"] == condition)
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/workflows/{workflow_id}", headers=auth(token))
        assert response.status_code == 200, response.text
        workflow: dict[str, Any] = response.json()
        if check(workflow):
            return workflow
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow never matched within {timeout} s: {workflow}")
        await asyncio.sleep(0.03)


def _statuses(workflow: dict[str, Any]) -> list[str]:
    return [step["status"] for step in workflow["steps"]]


class TestDocsExamples:
    def test_the_docs_show_these_examples(self) -> None:
        blocks = [json.loads(block) for block in WORKFLOWS.blocks()]
        bodies = [block.get("workflow", block) for block in blocks]
        for example in (CHAIN, GROUP, CHORD, CHORD_WITH_FAILURES):
            assert example in bodies

    async def test_chain_passes_each_result_to_the_next_step(
        self, client: httpx.AsyncClient, tenant: tuple[str, str], start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        _, token = tenant
        submitted = await submit_workflow(client, token, CHAIN)
        assert submitted["status"] == "running"
        assert _statuses(submitted) == ["queued", "waiting", "waiting"]

        done = await wait_workflow(client, token, submitted["id"], "succeeded")
        assert done["result"] == {"indexed": ["doc-pst-1-att"]}
        assert _statuses(done) == ["succeeded"] * 3
        assert [step["step"] for step in done["steps"]] == ["/steps/0", "/steps/1", "/steps/2"]
        assert done["steps"][1]["job"]["args"] == {"attachment_id": "pst-1-att"}
        assert done["steps"][2]["job"]["args"] == {
            "document_id": "doc-pst-1-att",
            "document_ids": [],
        }
        # Steps are ordinary jobs: listed with the tenant's other jobs, counted when accepted.
        metrics = (await client.get("/metrics")).text
        for name in ("process_pst_file", "extract_attachment", "index_to_opensearch"):
            sample = f'jobgate_jobs_submitted_total{{job_type="{name}",queue="default"}} 1.0'
            assert sample in metrics
        listed = await client.get("/jobs", headers=auth(token))
        step_ids = {step["job"]["id"] for step in done["steps"]}
        assert step_ids <= {job["id"] for job in listed.json()["items"]}

    async def test_group_runs_every_step_and_returns_all_results(
        self, client: httpx.AsyncClient, tenant: tuple[str, str], start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        _, token = tenant
        submitted = await submit_workflow(client, token, GROUP)
        assert _statuses(submitted) == ["queued"] * 3  # all released at once

        done = await wait_workflow(client, token, submitted["id"], "succeeded")
        assert done["result"] == [
            {"document_id": f"doc-att-{n}", "text": "hello"} for n in (1, 2, 3)
        ]

    async def test_chord_callback_receives_every_result(
        self, client: httpx.AsyncClient, tenant: tuple[str, str], start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        _, token = tenant
        submitted = await submit_workflow(client, token, CHORD)
        assert _statuses(submitted) == ["queued", "queued", "queued", "waiting"]

        done = await wait_workflow(client, token, submitted["id"], "succeeded")
        assert done["result"] == {"indexed": ["doc-att-1", "doc-att-2", "doc-att-3"]}
        callback = done["steps"][3]
        assert callback["step"] == "/callback"
        assert callback["job"]["args"]["document_ids"] == ["doc-att-1", "doc-att-2", "doc-att-3"]
        member_finished = max(step["job"]["finished_at"] for step in done["steps"][:3])
        assert callback["job"]["created_at"] >= member_finished

    async def test_chord_declared_with_failures_calls_back_with_them(
        self, client: httpx.AsyncClient, tenant: tuple[str, str], start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        _, token = tenant
        UNREADABLE.add("att-2")
        submitted = await submit_workflow(client, token, CHORD_WITH_FAILURES)

        done = await wait_workflow(client, token, submitted["id"], "succeeded")
        assert done["result"] == {"failed": 1}
        assert done["steps"][3]["job"]["args"] == {"statuses": ["succeeded", "failed", "succeeded"]}


async def test_failed_step_fails_the_workflow_and_retry_resumes_from_it(
    client: httpx.AsyncClient, tenant: tuple[str, str], start_worker: WorkerFactory
) -> None:
    await start_worker()
    _, token = tenant
    UNREADABLE.add("att-2")  # the outside condition: this attachment cannot be read yet
    submitted = await submit_workflow(client, token, CHORD)

    def settled(wf: dict[str, Any]) -> bool:
        return wf["status"] == "failed" and _statuses(wf)[:3] == [
            "succeeded",
            "failed",
            "succeeded",
        ]

    failed = await wait_workflow(client, token, submitted["id"], settled)
    assert failed["steps"][1]["job"]["error"]["message"] == "cannot read att-2"
    assert failed["steps"][3]["status"] == "skipped"  # the callback never ran
    assert failed["steps"][3]["job"] is None
    first_attempt = failed["steps"][1]["job"]["id"]

    # The step alone cannot be re-run: its workflow would never hear of the new job.
    alone = await client.post(f"/jobs/{first_attempt}/retry", headers=auth(token))
    assert alone.status_code == 409
    assert f"/workflows/{submitted['id']}/retry" in alone.json()["detail"]
    assert (await client.get(f"/jobs/{first_attempt}", headers=auth(token))).json()[
        "retried_by"
    ] is None

    UNREADABLE.clear()  # fixed
    response = await client.post(f"/workflows/{submitted['id']}/retry", headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "running"

    done = await wait_workflow(client, token, submitted["id"], "succeeded")
    assert done["result"] == {"indexed": ["doc-att-1", "doc-att-2", "doc-att-3"]}
    # Succeeded steps kept their jobs and ran once; the failed one ran again as a new job.
    for index in (0, 2):
        assert done["steps"][index]["job"]["id"] == failed["steps"][index]["job"]["id"]
        assert done["steps"][index]["job"]["attempts"] == 1
    rerun = done["steps"][1]["job"]
    assert rerun["retry_of"] == first_attempt
    assert rerun["attempts"] == 1
    assert RUNS == {
        "extract_attachment:att-1": 1,
        "extract_attachment:att-2": 2,
        "extract_attachment:att-3": 1,
        "index_to_opensearch:doc-att-1,doc-att-2,doc-att-3": 1,
    }
    old = await client.get(f"/jobs/{first_attempt}", headers=auth(token))
    assert old.json()["retried_by"] == rerun["id"]

    again = await client.post(f"/workflows/{submitted['id']}/retry", headers=auth(token))
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/workflow-state-conflict"


async def test_cancel_stops_the_running_step_and_releases_nothing_more(
    client: httpx.AsyncClient, tenant: tuple[str, str], start_worker: WorkerFactory
) -> None:
    await start_worker()
    _, token = tenant
    workflow = {
        "type": "chain",
        "steps": [
            {"type": "step", "job": "sleep", "args": {"seconds": 20, "steps": 200}},
            {"type": "step", "job": "extract_attachment", "args": {"attachment_id": "att-1"}},
        ],
    }
    submitted = await submit_workflow(client, token, workflow)
    await wait_workflow(
        client, token, submitted["id"], lambda wf: wf["steps"][0]["status"] == "running"
    )

    response = await client.post(f"/workflows/{submitted['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    cancelled = await wait_workflow(
        client, token, submitted["id"], lambda wf: _statuses(wf) == ["cancelled", "cancelled"]
    )
    assert cancelled["steps"][1]["job"] is None
    assert cancelled["finished_at"] is not None
    assert RUNS["extract_attachment:att-1"] == 0
    again = await client.post(f"/workflows/{submitted['id']}/cancel", headers=auth(token))
    assert again.status_code == 409


class TestValidation:
    @pytest.mark.parametrize(
        ("workflow", "loc", "kind"),
        [
            (
                {"type": "chain", "steps": [CHAIN["steps"][0], {"type": "step", "job": "nope"}]},
                ["body", "workflow", "steps", 1, "job"],
                "unknown_job_type",
            ),
            (
                {"type": "step", "job": "purge_expired"},  # internal: not submittable
                ["body", "workflow", "job"],
                "unknown_job_type",
            ),
            (
                {"type": "step", "job": "extract_attachment", "args": {"attachment_id": 5}},
                ["body", "workflow", "args", "attachment_id"],
                "string_type",
            ),
            (
                {"type": "step", "job": "extract_attachment", "args_from": {"attachment_id": "$"}},
                ["body", "workflow", "args_from", "attachment_id"],
                "bad_source",
            ),
            (
                {
                    "type": "chain",
                    "steps": [
                        CHAIN["steps"][0],
                        {
                            "type": "step",
                            "job": "extract_attachment",
                            "args_from": {"attachment_id": "emailz"},
                        },
                    ],
                },
                ["body", "workflow", "steps", 1, "args_from", "attachment_id"],
                "bad_source",
            ),
            (
                {"type": "chain", "steps": [GROUP, CHAIN["steps"][2]]},  # a list needs `*.`
                ["body", "workflow", "steps", 1, "args_from", "document_id"],
                "bad_source",
            ),
            (
                {
                    "type": "chain",
                    "steps": [
                        CHAIN["steps"][0],
                        {
                            "type": "step",
                            "job": "extract_attachment",
                            "args_from": {"attachment": "attachment_id"},
                        },
                    ],
                },
                ["body", "workflow", "steps", 1, "args_from", "attachment"],
                "unknown_arg",
            ),
            (
                {
                    "type": "chain",
                    "steps": [
                        CHAIN["steps"][0],
                        {
                            "type": "step",
                            "job": "index_to_opensearch",
                            "args": {"document_ids": ["x\u0000"]},  # jsonb cannot hold it
                            "args_from": {"document_id": "attachment_id"},
                        },
                    ],
                },
                ["body", "workflow", "steps", 1, "args"],
                "value_error",
            ),
            (
                {
                    "type": "chain",
                    "steps": [
                        CHAIN["steps"][0],
                        {
                            "type": "step",
                            "job": "extract_attachment",
                            "args_from": {"attachment_id": "emails"},  # an integer
                        },
                    ],
                },
                ["body", "workflow", "steps", 1, "args_from", "attachment_id"],
                "bad_source",
            ),
            (
                {  # each document_id is a string, document_id takes one, not a list
                    "type": "chord",
                    "group": GROUP["steps"],
                    "callback": {
                        "type": "step",
                        "job": "index_to_opensearch",
                        "args_from": {"document_id": "*.document_id"},
                    },
                },
                ["body", "workflow", "callback", "args_from", "document_id"],
                "bad_source",
            ),
        ],
    )
    async def test_a_workflow_that_cannot_run_is_422_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        tenant: tuple[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        workflow: dict[str, Any],
        loc: list[str | int],
        kind: str,
    ) -> None:
        _, token = tenant
        response = await client.post("/workflows", json={"workflow": workflow}, headers=auth(token))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "/problems/invalid-workflow"
        assert {"loc": loc, "type": kind} in [
            {"loc": issue["loc"], "type": issue["type"]} for issue in problem["errors"]
        ]
        async with sessionmaker() as session:
            for model in (Workflow, Job):
                count = await session.execute(select(func.count()).select_from(model))
                assert count.scalar_one() == 0

    async def test_an_unknown_node_type_is_a_schema_error(
        self, client: httpx.AsyncClient, tenant: tuple[str, str]
    ) -> None:
        _, token = tenant
        response = await client.post(
            "/workflows", json={"workflow": {"type": "loop", "steps": []}}, headers=auth(token)
        )
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/validation-error"


async def test_another_tenants_workflow_is_not_found(
    client: httpx.AsyncClient,
    tenant: tuple[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tenant_id, token = tenant
    _, other = await make_tenant(sessionmaker, "globex")
    submitted = await submit_workflow(client, token, GROUP)
    path = f"/workflows/{submitted['id']}"

    assert (await client.get(path)).status_code == 401
    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        response = await client.request(method, path + suffix, headers=auth(other))
        assert response.status_code == 404, (method, suffix)
        assert response.json()["type"] == "/problems/workflow-not-found"
    missing = await client.get(f"/workflows/{uuid.uuid4()}", headers=auth(token))
    assert missing.status_code == 404
    reader = await make_api_key(sessionmaker, tenant_id, Scope.READ)
    refused = await client.post("/workflows", json={"workflow": GROUP}, headers=auth(reader))
    assert refused.status_code == 403
    assert (await client.get(path, headers=auth(token))).json()["status"] == "running"


class TestDurability:
    async def test_a_redis_flush_mid_workflow_loses_nothing(
        self,
        client: httpx.AsyncClient,
        tenant: tuple[str, str],
        redis: Redis,
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        _, token = tenant
        fast = settings.model_copy(
            update={"reconcile_interval_seconds": 0.3, "reconcile_grace_seconds": 0}
        )
        await start_worker(settings=fast)
        delayed = {**CHAIN["steps"][1], "options": {"delay_seconds": 1}}  # type: ignore[dict-item]
        workflow = {"type": "chain", "steps": [CHAIN["steps"][0], delayed, CHAIN["steps"][2]]}
        submitted = await submit_workflow(client, token, workflow)
        await wait_workflow(
            client, token, submitted["id"], lambda wf: wf["steps"][1]["status"] == "scheduled"
        )

        # The released step's queue entry and payload are gone (flushdb: the test's own
        # database; FLUSHALL would empty the other xdist worker's too).
        await redis.flushdb()

        done = await wait_workflow(client, token, submitted["id"], "succeeded")
        assert done["result"] == {"indexed": ["doc-pst-1-att"]}
        assert [step["job"]["attempts"] for step in done["steps"]] == [1, 1, 1]

    async def test_an_advance_lost_with_its_worker_is_redriven(
        self,
        client: httpx.AsyncClient,
        tenant: tuple[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        tenant_id, token = tenant
        submitted = await submit_workflow(client, token, CHAIN)
        first = uuid.UUID(submitted["steps"][0]["job"]["id"])
        # A worker recorded the first step's result and died before advancing the workflow.
        await _record_by_hand(
            sessionmaker, tenant_id, first, datetime.now(UTC) + timedelta(hours=1)
        )
        await redis.flushdb()

        fast = settings.model_copy(
            update={"reconcile_interval_seconds": 0.3, "reconcile_grace_seconds": 0}
        )
        await start_worker(settings=fast)
        done = await wait_workflow(client, token, submitted["id"], "succeeded")
        assert done["result"] == {"indexed": ["doc-pst-1-att"]}
        assert RUNS["process_pst_file:pst-1"] == 0  # recorded by hand above, never re-run

    async def test_retention_keeps_the_steps_of_a_running_workflow(
        self,
        client: httpx.AsyncClient,
        tenant: tuple[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        tenant_id, token = tenant
        submitted = await submit_workflow(client, token, CHAIN)
        first = uuid.UUID(submitted["steps"][0]["job"]["id"])
        # Retention passed at once.
        await _record_by_hand(
            sessionmaker, tenant_id, first, datetime.now(UTC) - timedelta(seconds=1)
        )
        async with sessionmaker() as session:
            # The next steps are planned from its result: it stays while the workflow runs.
            assert await operator_queries.purge_expired(session, batch_size=100) == 0
            workflow = await session.get(Workflow, uuid.UUID(submitted["id"]))
            assert workflow is not None
            workflow.status = "cancelled"
            await session.commit()
            assert await operator_queries.purge_expired(session, batch_size=100) == 1


async def _record_by_hand(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    job_id: uuid.UUID,
    expires_at: datetime,
) -> None:
    """Claim the first step and record its success, as a worker would (no workflow advance)."""
    engine = sessionmaker.kw["bind"]
    key = JobKey(uuid.UUID(tenant_id), job_id)
    (claimed,) = await claim_jobs(engine, [key], retention=Retention(3600, {}))
    result = {"attachment_id": "pst-1-att", "emails": 3}
    success = Success(key, result, expires_at, RanAttempt.of(claimed, "test"))
    assert await record_successes(engine, [success]) == {key}
