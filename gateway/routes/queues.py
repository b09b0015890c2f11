"""`/admin/queues`: see every queue, pause and resume one; the operator token only."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import AdminAuth, authenticated_first, check_operator_token
from gateway.deps import Resources, ResourcesDep, SessionDep
from gateway.problems import problems
from gateway.schemas import QueueOut, QueuePauseIn, queue_out
from shared.jobs import queue_pauses

router = APIRouter(
    prefix="/admin/queues",
    tags=["admin"],
    dependencies=[AdminAuth],  # declares the scheme in OpenAPI; the route class checks first
    route_class=authenticated_first(check_operator_token),
)


async def _state_of(session: AsyncSession, resources: Resources, queue: str) -> QueueOut:
    (state,) = await queue_pauses.queue_states(session, resources.redis, queues=[queue])
    return queue_out(state)


@router.get(
    "",
    operation_id="list_queues",
    summary="List queues: paused or not, waiting and running jobs",
    responses=problems(401),
)
async def list_queues(session: SessionDep, resources: ResourcesDep) -> list[QueueOut]:
    """Every queue some job type runs on, by name."""
    states = await queue_pauses.queue_states(
        session, resources.redis, queues=resources.registry.queues()
    )
    return [queue_out(state) for state in states]


@router.post(
    "/{queue}/pause",
    operation_id="pause_queue",
    summary="Pause a queue",
    responses=problems(401, 404, 422),
)
async def pause_queue(
    queue: str, session: SessionDep, resources: ResourcesDep, body: QueuePauseIn | None = None
) -> QueueOut:
    """Workers start none of the queue's jobs until it is resumed; running jobs finish.

    Submits are still accepted (`202`, status `queued`) and wait in line. Pausing a paused
    queue changes nothing and answers its state. Durable: it holds across restarts of every
    process and a loss of Redis.
    """
    queue_pauses.require_known(queue, resources.registry.queues())
    await queue_pauses.pause_queue(
        session,
        resources.redis,
        queue=queue,
        paused_by="api",
        reason=None if body is None else body.reason,
    )
    return await _state_of(session, resources, queue)


@router.post(
    "/{queue}/resume",
    operation_id="resume_queue",
    summary="Resume a paused queue",
    responses=problems(401, 404, 422),
)
async def resume_queue(queue: str, session: SessionDep, resources: ResourcesDep) -> QueueOut:
    """Workers start the queue's waiting jobs at once, in their usual order (priority, then
    fair share between tenants). Resuming a queue that is not paused changes nothing."""
    queue_pauses.require_known(queue, resources.registry.queues())
    await queue_pauses.resume_queue(session, resources.redis, queue=queue)
    return await _state_of(session, resources, queue)
