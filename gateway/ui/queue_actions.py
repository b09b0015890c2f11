"""The dashboard's queue actions, for the operator only: pause and resume a queue.

Form POSTs like the job actions (`gateway.ui.actions`: same-origin and CSRF-checked), answered
with a redirect to the overview carrying a fixed notice; the same `shared.jobs.queue_pauses`
functions as `/admin/queues` and `jobgate queues`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from gateway.deps import ResourcesDep, SessionDep
from gateway.ui.access import PostedForm, ViewerDep
from shared.jobs import queue_pauses

router = APIRouter()


def _back(notice: str) -> Response:
    return RedirectResponse(f"/ui?notice={notice}", status_code=303)


@router.post("/queues/{queue}/pause")
async def pause(
    queue: str, viewer: ViewerDep, form: PostedForm, session: SessionDep, resources: ResourcesDep
) -> Response:
    if not viewer.is_admin:  # a queue carries every tenant's jobs
        return _back("forbidden")
    if queue not in resources.registry.queues():
        return _back("unknown-queue")
    await queue_pauses.pause_queue(
        session, resources.redis, queue=queue, paused_by="dashboard", reason=None
    )
    return _back("queue-paused")


@router.post("/queues/{queue}/resume")
async def resume(
    queue: str, viewer: ViewerDep, form: PostedForm, session: SessionDep, resources: ResourcesDep
) -> Response:
    if not viewer.is_admin:
        return _back("forbidden")
    if queue not in resources.registry.queues():
        return _back("unknown-queue")
    await queue_pauses.resume_queue(session, resources.redis, queue=queue)
    return _back("queue-resumed")
