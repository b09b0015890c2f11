"""What a job function may read from PostgreSQL: its own tenant's rows, nothing else.

Job functions never get a session: the runner hands them a `TenantData` bound to the job's
tenant, whose every method calls a tenant-scoped `shared.jobs.store` function with that tenant.
PostgreSQL being unavailable comes out as `DatabaseUnavailable`, which the runner does not
count against the job (`worker.platform_failures`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import store
from shared.jobs.store import JobCount
from worker.platform_failures import database_call


class TenantData:
    """Read-only queries over one tenant's data, each in its own short session."""

    __slots__ = ("_sessionmaker", "_tenant_id")

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, tenant_id: uuid.UUID
    ) -> None:
        self._sessionmaker = sessionmaker
        self._tenant_id = tenant_id

    @property
    def tenant_id(self) -> uuid.UUID:
        """The tenant every query is scoped to."""
        return self._tenant_id

    async def job_counts(self, since: datetime) -> list[JobCount]:
        """This tenant's jobs created since `since`, counted by type and status."""
        with database_call():  # an outage is jobgate's, not the job's (`DatabaseUnavailable`)
            async with self._sessionmaker() as session:
                return await store.count_jobs(session, tenant_id=self._tenant_id, since=since)
