"""What a worker holds (`WorkerContext`) and what a job function gets (`JobContext`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.settings import Settings

if TYPE_CHECKING:
    from worker.binding import Binding


class WorkerContext(TypedDict):
    """ARQ's `ctx`, as jobgate fills it in `on_startup` and ARQ adds to it per job."""

    redis: ArqRedis
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    bindings: dict[str, Binding]
    worker_name: str
    job_id: str
    job_try: int


ProgressReporter = Callable[[int, int | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class JobContext:
    """Given to a job function: who the job is and how to report progress."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    attempt: int
    max_tries: int
    worker_name: str
    report: ProgressReporter

    async def progress(
        self, current: int, total: int | None = None, message: str | None = None
    ) -> None:
        """Record how far the job is; callers polling the job see it at once."""
        await self.report(current, total, message)
