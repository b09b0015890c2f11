"""Housekeeping across tenants, handed only to jobs that jobgate's own schedules submit."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import operator_queries
from worker.platform_failures import database_call


@dataclass(frozen=True)
class Maintenance:
    """Operations no tenant's job may perform; `JobContext.maintenance` is None for those."""

    sessionmaker: async_sessionmaker[AsyncSession]

    async def purge_expired(self, *, batch_size: int) -> int:
        """Delete every job past its retention, a batch per transaction; returns the count."""
        deleted = 0
        while True:
            with database_call():  # an outage is jobgate's, not the job's
                async with self.sessionmaker() as session:
                    count = await operator_queries.purge_expired(session, batch_size=batch_size)
            deleted += count
            if count < batch_size:
                return deleted
