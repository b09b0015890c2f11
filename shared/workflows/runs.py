"""Workflows in PostgreSQL: submit, advance, cancel, retry. Every step runs as an ordinary job.

A workflow row keeps the definition; a step becomes a job (`job.workflow_id`,
`job.workflow_step` = its JSON pointer) only once its input is ready, so nothing waits in
Redis and nothing can run early. Advancing locks the workflow row (`SELECT ... FOR UPDATE`),
reads its steps' current jobs, plans (`shared.workflows.plan`) and inserts the released jobs in
that one transaction; two steps finishing at once advance one after the other, and the unique
index on (workflow, step) keeps a step from being released twice. Step jobs are created by
`shared.jobs.submit.create_jobs`, as every job is: stored, committed, then handed to Redis. A
submit or retry that Redis refuses is undone and answered 503, like any job submit; the steps
an advance releases were already accepted, so if their hand-off fails the reconciler enqueues
them (their rows are waiting), and a workflow whose advance was lost (a worker killed between
recording a step and advancing) is advanced again by the reconciler (`stalled_workflows`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from arq.connections import ArqRedis
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Select, delete, exists, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import NoArgs, Registry
from shared.errors import (
    JobStateConflict,
    QueueNotAllowed,
    QueueUnavailable,
    RateLimited,
    WorkflowNotFound,
    WorkflowStateConflict,
)
from shared.ids import new_id
from shared.jobs import control, status_changes
from shared.jobs.submit import READ_BACK, InSession, Row, Undo, create_jobs, job_values
from shared.models import Job, Workflow
from shared.settings import Settings
from shared.status import TERMINAL, UNSUCCESSFUL, JobStatus
from shared.tenants.ratelimit import RateLimit, charge
from shared.workflows.plan import Plan, Release, StepRun, plan_workflow
from shared.workflows.spec import WorkflowNode, check_workflow, resolve

NODE = TypeAdapter[WorkflowNode](WorkflowNode)
_UNFINISHED = [status.value for status in JobStatus if status not in TERMINAL]


def _owned(tenant_id: uuid.UUID) -> Select[Workflow]:
    """The base of every workflow read: this tenant's workflows only."""
    return select(Workflow).where(Workflow.tenant_id == tenant_id)


def definition_of(workflow: Workflow) -> WorkflowNode:
    """The workflow's tree, parsed again from what was stored (a step's `start_by` may have
    passed since: that step's job expires, the definition stays readable)."""
    return NODE.validate_python(workflow.definition, context={READ_BACK: True})


async def find_workflow(
    session: AsyncSession, *, tenant_id: uuid.UUID, workflow_id: uuid.UUID, lock: bool = False
) -> Workflow:
    """The tenant's workflow (locked for this transaction if `lock`); else `WorkflowNotFound`."""
    stmt = _owned(tenant_id).where(Workflow.id == workflow_id)
    if lock:
        stmt = stmt.with_for_update()
    result = await session.execute(stmt.execution_options(populate_existing=True))
    found = result.scalar_one_or_none()
    if found is None:
        raise WorkflowNotFound()
    return found


async def step_jobs(
    session: AsyncSession, *, tenant_id: uuid.UUID, workflow_id: uuid.UUID
) -> list[Job]:
    """The current job of every released step (a re-run replaces the job it re-runs)."""
    result = await session.execute(
        select(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.workflow_id == workflow_id,
            Job.retried_by.is_(None),
        )
        .order_by(Job.id)
        .execution_options(populate_existing=True)
    )
    return list(result.scalars())


def plan_of(workflow: Workflow, jobs: Sequence[Job]) -> Plan:
    """Where the workflow stands, given its steps' current jobs."""
    runs = {
        job.workflow_step: StepRun(status=job.status, result=job.result, error=job.error)
        for job in jobs
        if job.workflow_step is not None
    }
    return plan_workflow(definition_of(workflow), runs)


def _released_job(registry: Registry, workflow: Workflow, release: Release, now: datetime) -> Row:
    """The job of a step whose input is ready: its args, the mapped input values included."""
    step = release.step
    job_type = registry.get(step.job)
    raw = {**step.args}
    raw.update({arg: resolve(source, release.value) for arg, source in step.args_from.items()})
    try:
        args = job_type.args.model_validate(raw)
    except ValidationError:
        args = None
    options = step.options
    try:
        job_type.queue_for(options.queue)
    except QueueNotAllowed:
        # Checked at submit; a deploy since took the queue from the type. The step runs on the
        # type's own queue rather than leave its workflow stuck.
        options = options.model_copy(update={"queue": None})
    job = job_values(job_type, args=args or NoArgs(), options=options, now=now)
    if args is None:
        # The input did not fit (a result the contract allows, but not these Args): store what
        # was asked, so the worker fails the step visibly as `invalid_args`, like any job.
        job["args"] = raw
    job |= {
        "tenant_id": workflow.tenant_id,
        "workflow_id": workflow.id,
        "workflow_step": release.pointer,
    }
    return job


def _released_jobs(workflow: Workflow, plan: Plan, registry: Registry) -> list[Row]:
    """Record the plan on the workflow: finish it, or build the jobs of its released steps."""
    now = datetime.now(UTC)
    if plan.state.kind == "done":
        workflow.status, workflow.result, workflow.finished_at = "succeeded", plan.state.value, now
        return []
    if plan.state.kind in ("failed", "failing"):
        # A failure fails the workflow at once; steps still running finish, nothing new starts.
        workflow.status, workflow.finished_at = "failed", now
        return []
    return [_released_job(registry, workflow, release, now) for release in plan.releases]


async def submit_workflow(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    definition: WorkflowNode,
    registry: Registry,
    settings: Settings,
) -> Workflow:
    """Check, store and start a workflow: the workflow and its first jobs in one transaction.

    Like a job submit, it either returns a workflow that will run or stores nothing
    (`QueueUnavailable` if Redis refuses the first jobs).
    """
    check_workflow(definition, registry)
    workflow = Workflow(
        id=new_id(),
        tenant_id=tenant_id,
        status="running",
        definition=NODE.dump_python(definition, mode="json", exclude_defaults=True),
        created_at=datetime.now(UTC),
    )
    session.add(workflow)
    await session.flush()
    jobs = _released_jobs(workflow, plan_of(workflow, []), registry)

    async def undo(session: AsyncSession) -> None:
        await session.execute(
            delete(Workflow).where(Workflow.tenant_id == tenant_id, Workflow.id == workflow.id)
        )

    await create_jobs(redis, InSession(session, tenant_id, settings=settings, undo=undo), jobs)
    return workflow


async def advance_workflow(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    registry: Registry,
    settings: Settings,
) -> int:
    """Release what became ready (or finish the workflow), commit, and hand the new jobs to
    Redis (if it refuses, the reconciler enqueues them later); how many jobs were released.

    Idempotent: advancing twice releases nothing twice.
    """
    try:
        workflow = await find_workflow(
            session, tenant_id=tenant_id, workflow_id=workflow_id, lock=True
        )
    except WorkflowNotFound:
        return 0
    if workflow.status != "running":
        return 0
    jobs = _released_jobs(
        workflow,
        plan_of(workflow, await step_jobs(session, tenant_id=tenant_id, workflow_id=workflow_id)),
        registry,
    )
    await create_jobs(redis, InSession(session, tenant_id, settings=settings, accepted=True), jobs)
    return len(jobs)


async def cancel_workflow(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    registry: Registry,
    settings: Settings,
) -> Workflow:
    """Cancel a running workflow: nothing more is released, unfinished steps are cancelled."""
    workflow = await find_workflow(session, tenant_id=tenant_id, workflow_id=workflow_id, lock=True)
    if workflow.status != "running":
        status = workflow.status
        await session.rollback()
        raise WorkflowStateConflict(f"The workflow is already {status}; it cannot be cancelled.")
    jobs = await step_jobs(session, tenant_id=tenant_id, workflow_id=workflow_id)
    workflow.status, workflow.finished_at = "cancelled", datetime.now(UTC)
    await session.commit()  # from here on no advance releases anything
    for job in jobs:
        if job.status in _UNFINISHED:
            # Finished meanwhile, or Redis down for the abort: the workflow stays cancelled.
            with contextlib.suppress(JobStateConflict, QueueUnavailable):
                await control.cancel_job(
                    session,
                    redis,
                    tenant_id=tenant_id,
                    job_id=job.id,
                    registry=registry,
                    settings=settings,
                )
    return workflow


async def retry_workflow(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    registry: Registry,
    rate: RateLimit | None,
    settings: Settings,
) -> Workflow:
    """Resume a failed or cancelled workflow: its failed, cancelled and expired steps run again
    as new jobs (linked by `retry_of` / `retried_by`), succeeded steps are kept, the rest
    follows.

    Each re-run step takes a token of `rate` (the tenant's limit), as a submitted step does.
    """
    workflow = await find_workflow(session, tenant_id=tenant_id, workflow_id=workflow_id, lock=True)
    if workflow.status not in ("failed", "cancelled"):
        status = workflow.status
        await session.rollback()
        raise WorkflowStateConflict(
            f"Only failed or cancelled workflows can be retried; this one is {status}."
        )
    jobs = await step_jobs(session, tenant_id=tenant_id, workflow_id=workflow_id)
    retried = {job.workflow_step: job for job in jobs if job.status in UNSUCCESSFUL}
    kept = [job for job in jobs if job.workflow_step not in retried]
    undo = _restore(workflow)
    workflow.status, workflow.finished_at, workflow.result = "running", None, None
    # Planned without the failed jobs, their steps are released again, inputs and all.
    new_jobs = _released_jobs(workflow, plan_of(workflow, kept), registry)
    try:
        await charge(redis, tenant_id=tenant_id, rate=rate, cost=len(new_jobs))
    except (RateLimited, QueueUnavailable):
        await session.rollback()  # the workflow stays as it was
        raise
    for job in new_jobs:
        old = retried.get(job["workflow_step"])
        if old is not None:  # link first: the unique index allows one current job per step
            job["retry_of"] = old.id
            await status_changes.link_step_retry(
                session, tenant_id=tenant_id, job_id=old.id, retried_by=job["id"]
            )
    # Refused by Redis, the retry is undone (new jobs and their links, the workflow's state),
    # as a job's re-run is: a 503, and the workflow stays failed for the next retry.
    await create_jobs(redis, InSession(session, tenant_id, settings=settings, undo=undo), new_jobs)
    return workflow


def _restore(workflow: Workflow) -> Undo:
    """Take a retry's state change back, if the workflow is still where the retry put it."""
    tenant_id, workflow_id = workflow.tenant_id, workflow.id
    status, finished_at, result = workflow.status, workflow.finished_at, workflow.result

    async def undo(session: AsyncSession) -> None:
        await session.execute(
            update(Workflow)
            .where(
                Workflow.tenant_id == tenant_id,
                Workflow.id == workflow_id,
                Workflow.status == "running",
            )
            # SQL NULL, not JSON null, when there was no result (as the row had it).
            .values(
                status=status, finished_at=finished_at, result=null() if result is None else result
            )
            .execution_options(synchronize_session=False)
        )

    return undo


async def stalled_workflows(session: AsyncSession, *, limit: int = 1000) -> list[Workflow]:
    """Running workflows none of whose steps is unfinished: their last advance was lost.

    Crosses tenants by design, like the reconciler that calls it: it repairs progress, it
    does not return workflow data to anyone.
    """
    unfinished = exists().where(
        Job.workflow_id == Workflow.id,
        Job.retried_by.is_(None),
        Job.status.in_(_UNFINISHED),
    )
    result = await session.execute(
        select(Workflow).where(Workflow.status == "running", ~unfinished).limit(limit)
    )
    return list(result.scalars())
