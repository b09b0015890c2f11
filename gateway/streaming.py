"""Server-Sent Events of one job: its status and progress changes, until it is terminal."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway.deps import Resources
from gateway.job_events import JobEvents
from gateway.schemas import JobOut
from shared.jobs import store
from shared.models import Job

# Comment lines every so often keep proxies and load balancers from closing a quiet stream.
PING_INTERVAL_SECONDS = 15


def change_of(previous: JobOut | None, current: JobOut) -> str | None:
    """The event name for `current` after `previous`: `status`, `progress`, or None (no news)."""
    if previous is None or previous.status != current.status:
        return "status"
    if previous.progress != current.progress:
        return "progress"
    return None


async def job_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    events: JobEvents,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    recheck_seconds: float,
) -> AsyncIterator[ServerSentEvent]:
    """The job's current state, then one event per change, ending after a terminal status."""
    previous: JobOut | None = None
    sent = 0
    async with sessionmaker() as session, events.watch(job_id) as changed:
        while True:
            # Clear before reading: a change after the read sets the event again, never lost.
            changed.clear()
            job = await store.find_job(session, tenant_id=tenant_id, job_id=job_id)
            # End the read transaction so an open stream holds no pooled connection.
            # (Commit, not rollback: rollback would expire the loaded job.)
            await session.commit()
            if job is None:  # purged while streaming: nothing more will happen to it
                return
            current = JobOut.of(job)
            name = change_of(previous, current)
            if name is not None:
                sent += 1
                yield ServerSentEvent(current.model_dump_json(), event=name, id=str(sent))
            if current.status.is_terminal:
                return
            previous = current
            # The timer covers a missed notification (e.g. while the listener reconnects).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), recheck_seconds)


async def open_job_stream(
    session: AsyncSession, resources: Resources, job: Job
) -> EventSourceResponse:
    """The event stream of an authorized `job`; `session` is the request's, ended here."""
    # The stream reads with a session of its own; the request's would otherwise hold its
    # connection until the stream ends (FastAPI closes it only after the response).
    await session.commit()
    stream = job_events(
        resources.sessionmaker,
        resources.events,
        tenant_id=job.tenant_id,
        job_id=job.id,
        recheck_seconds=resources.settings.wait_recheck_seconds,
    )
    return EventSourceResponse(stream, ping=PING_INTERVAL_SECONDS)
