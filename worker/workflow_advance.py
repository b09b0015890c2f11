"""Moving workflows on from the worker: after a step's outcome is recorded, and on re-drive.

The runner records a step's outcome first (its own statement) and advances its workflow
after, in a transaction of its own (`shared.workflows.runs.advance_workflow`). If the worker dies
in between, or PostgreSQL or Redis fail at that moment, nothing is lost: the reconciler finds
running workflows with no unfinished step (`redrive_workflows`) and advances them again, and
released jobs whose hand-off to Redis failed are waiting rows that it enqueues anyway.
"""

from __future__ import annotations

import uuid

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import REGISTRY
from shared.jobs.rows import ClaimedJob
from shared.settings import Settings
from shared.workflows.runs import advance_workflow, stalled_workflows
from worker.context import WorkerContext

log = structlog.get_logger("jobgate.worker")


async def advance(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    workflow_id: uuid.UUID,
    settings: Settings,
) -> int:
    """Advance one workflow, in a session of its own; how many steps were released."""
    async with sessionmaker() as session:
        return await advance_workflow(
            session,
            redis,
            tenant_id=tenant_id,
            workflow_id=workflow_id,
            registry=REGISTRY,
            settings=settings,
        )


async def advance_after_step(ctx: WorkerContext, job: ClaimedJob) -> None:
    """Called by the runner once a step's final outcome is recorded; never raises for I/O."""
    if job.workflow_id is None:
        return
    try:
        released = await advance(
            ctx["sessionmaker"],
            ctx["redis"],
            tenant_id=job.tenant_id,
            workflow_id=job.workflow_id,
            settings=ctx["settings"],
        )
    except (DBAPIError, OSError, RedisError) as exc:  # the reconciler advances it later
        log.warning("workflow.advance_failed", workflow_id=str(job.workflow_id), error=repr(exc))
        return
    if released:
        log.info("workflow.advanced", workflow_id=str(job.workflow_id), released=released)


async def redrive_workflows(
    sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis, settings: Settings
) -> int:
    """Advance running workflows with no unfinished step; how many steps that released."""
    async with sessionmaker() as session:
        stalled = await stalled_workflows(session)
    released = 0
    for workflow in stalled:
        released += await advance(
            sessionmaker,
            redis,
            tenant_id=workflow.tenant_id,
            workflow_id=workflow.id,
            settings=settings,
        )
    return released
