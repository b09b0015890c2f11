"""A running job's progress, written best effort: a failed write never reaches job code.

Progress is for people watching; the job's work must not stop because it could not be shown.
A write that fails (PostgreSQL unavailable, or a value it refuses) is logged with its cause,
without the driver's text, and dropped; the next report writes the latest progress anyway.
After a failure, reports are dropped for `PAUSE_SECONDS` and the first one after that writes
the progress as it then is: a job reporting every few milliseconds must not wait on a connect
timeout each time while PostgreSQL is down, nor hammer it as it comes back.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db_errors import describe_database_error
from shared.jobs import status_changes

log = structlog.get_logger("jobgate.worker")

PAUSE_SECONDS = 1.0


class BestEffortProgress:
    """The `report` of one job's context (`JobContext.progress` calls it)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._tenant_id = tenant_id
        self._job_id = job_id
        self._paused_until = 0.0

    async def __call__(self, current: int, total: int | None, message: str | None) -> None:
        if time.monotonic() < self._paused_until:
            return  # a later report carries newer progress; this one is dropped
        progress: dict[str, Any] = {"current": current, "total": total, "message": message}
        try:
            async with self._sessionmaker() as session:
                await status_changes.record_progress(
                    session, tenant_id=self._tenant_id, job_id=self._job_id, progress=progress
                )
                await session.commit()
        except Exception as exc:  # never the job's failure: see the module docstring
            self._paused_until = time.monotonic() + PAUSE_SECONDS
            log.warning("job.progress_not_recorded", cause=describe_database_error(exc))
