"""Per-tenant concurrency quotas: how many of a tenant's jobs may run at once, over all workers.

A tenant with a quota has a set of slots (`worker.slots`), `jobgate:running:<tenant>`: a
crashed worker's slots free themselves within one lease; a finished attempt gives its slot
back at once.

A job that finds no free slot is not run and not counted as an attempt: the runner puts it back
in line for `worker_quota_defer_seconds` (see `worker.admission`).
"""

from __future__ import annotations

import time
import uuid

import structlog
from arq.connections import ArqRedis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.keys import running_key
from shared.tenants import tenancy
from worker import slots

log = structlog.get_logger("jobgate.worker")

_MAX_CACHED_TENANTS = 10_000


class TenantQuotas:
    """Each tenant's quota, read from PostgreSQL at most once per `ttl_seconds` per worker."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        default: int | None,
        ttl_seconds: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._default = default
        self._ttl_seconds = ttl_seconds
        self._cache: dict[uuid.UUID, tuple[int | None, float]] = {}

    async def limit_of(self, tenant_id: uuid.UUID) -> int | None:
        """The tenant's quota (its own, else the default); None: unlimited."""
        now = time.monotonic()
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            async with self._sessionmaker() as session:
                own = await tenancy.max_concurrent_jobs(session, tenant_id=tenant_id)
        except (DBAPIError, PoolTimeout, OSError) as exc:
            # The claim that follows meets the same outage and deals with it; keep what we knew.
            log.warning("quota.lookup_failed", error=type(exc).__name__)
            return cached[0] if cached is not None else self._default
        limit = own or self._default
        if len(self._cache) >= _MAX_CACHED_TENANTS:
            self._cache.clear()
        self._cache[tenant_id] = (limit, now + self._ttl_seconds)
        return limit


async def take_slot(redis: ArqRedis, *, tenant_id: uuid.UUID, job_id: str, limit: int) -> bool:
    """Hold one of the tenant's `limit` slots for this job (again, if it already holds one)."""
    return await slots.take_slot(redis, running_key(str(tenant_id)), job_id=job_id, limit=limit)


async def give_back_slot(redis: ArqRedis, *, tenant_id: uuid.UUID, job_id: str) -> None:
    """The job's attempt is over: free its slot."""
    await slots.give_back_slot(redis, running_key(str(tenant_id)), job_id=job_id)
