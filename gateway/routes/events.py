"""`GET /jobs/{id}/events`: a job's status and progress changes as Server-Sent Events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sse_starlette import EventSourceResponse

from gateway.auth import OwnedJob
from gateway.deps import ResourcesDep, SessionDep
from gateway.problems import problems
from gateway.streaming import PING_INTERVAL_SECONDS, open_job_stream

STREAM_DESCRIPTION = f"""\
A `text/event-stream` (Server-Sent Events). The first event is the job as it is now; then one
event follows each change, and the stream ends after the event carrying a terminal status
(`succeeded`, `failed`, `cancelled`, `expired`). A job that is already terminal gives one event.

Each event has
- `event: status` when the status changed (and for the first event), `event: progress` when
  only `progress` changed;
- `data:` the job, exactly as `GET /jobs/{{id}}` returns it (one line of JSON);
- `id:` the event's number within this stream (1, 2, ...). A client that reconnects gets a
  new stream, whose first event is again the job's current state.

Comment lines (`: ping ...`) are sent every {PING_INTERVAL_SECONDS} s to keep idle
connections open; clients ignore them. Changes that follow each other quickly may arrive
as one event showing the latest state.
"""

STREAM_EXAMPLE = (
    'id: 1\r\nevent: status\r\ndata: {"id":"0193...","name":"sleep","status":"running",...}'
    "\r\n\r\n"
    'id: 2\r\nevent: progress\r\ndata: {"id":"0193...","name":"sleep","status":"running",'
    '...,"progress":{"current":1,"total":4,"message":"slept 1 of 4 steps"},...}\r\n\r\n'
)

STREAM_RESPONSE: dict[str, Any] = {
    "description": STREAM_DESCRIPTION,
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "string",
                "description": "Events whose `data` is a `JobOut` (the example is abridged).",
            },
            "example": STREAM_EXAMPLE,
        }
    },
}

router = APIRouter(tags=["jobs"])


@router.get(
    "/jobs/{job_id}/events",
    operation_id="stream_job_events",
    summary="Follow a job as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={200: STREAM_RESPONSE, **problems(401, 403, 404, 422)},
)
async def stream_job_events(
    job: OwnedJob, session: SessionDep, resources: ResourcesDep
) -> EventSourceResponse:
    """Follow a job's status and progress as Server-Sent Events until it is terminal."""
    return await open_job_stream(session, resources, job)
