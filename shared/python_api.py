"""jobgate from Python: submit jobs and wait for their results without going through HTTP.

For Python services that import the contracts (seed 001's `perform_async` / `perform_in` /
`perform_at`, seed 004's `.delay()`). A submit here is the HTTP route's submit: the same
`SubmitOptions` validation, the same store-then-enqueue (`shared.jobs.submit.create_jobs`), the same
tenant, so the job is durable, visible in `GET /jobs` and run by the same workers. Other
languages use the HTTP API (or its generated clients); this is a shortcut, not a second way
in: it needs the database and Redis URLs, so it is for code inside the deployment. It is not
rate limited (that guards the HTTP edge).

    jobgate = Jobgate(settings, tenant="acme")            # owns an engine and a Redis pool
    handle = await jobgate.submit(SEND_EMAIL, args, delay=60, priority="critical")
    result = await handle.result(timeout=30)              # a SendEmailResult

or, once `configure(settings, tenant="acme")` ran, `await SEND_EMAIL.submit(args)`, and from
code without an event loop (Flask), `SEND_EMAIL.submit_sync(args).result(timeout=30)`.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import Contract, JobType, Priority
from shared.db import create_engine, create_sessionmaker
from shared.jobs import store
from shared.jobs.attempts import AttemptOut, read_attempts
from shared.jobs.submit import InSession, Submission, SubmitOptions, create_jobs
from shared.models import Job
from shared.redis import create_redis
from shared.settings import Settings, get_settings
from shared.status import JobStatus
from shared.tenants import tenancy

A = TypeVar("A", bound=Contract)
R = TypeVar("R", bound=Contract)
T = TypeVar("T")

POLL_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)
"""How often `result()` re-reads the job: soon at first, then every 0.2 s."""


class JobDidNotSucceed(RuntimeError):
    """The job ended `failed`, `cancelled` or `expired`; `status` and `error` say how."""

    def __init__(self, job: Job) -> None:
        self.status = JobStatus(job.status)
        self.error = job.error
        message = (job.error or {}).get("message", "")
        super().__init__(f"job {job.id} ({job.name}) is {job.status}: {message}")


@dataclass(frozen=True)
class JobHandle(Generic[R]):
    """A submitted job: read it, or wait for its typed result."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    job_type: JobType[Any, R]
    client: Jobgate

    async def job(self) -> Job:
        """The job's row as it is now."""
        return await self.client.job(self.id, tenant_id=self.tenant_id)

    async def attempts(self) -> list[AttemptOut]:
        """The job's attempts so far, oldest first, as `GET /jobs/{id}/attempts` lists them."""
        return await self.client.attempts(self.id, tenant_id=self.tenant_id)

    async def result(self, timeout: float | None = None) -> R:  # noqa: ASYNC109 (as Celery .get)
        """Wait until the job is finished; its result, or `JobDidNotSucceed` / `TimeoutError`."""
        polls = 0
        async with asyncio.timeout(timeout):
            while True:
                job = await self.job()
                if job.status == JobStatus.SUCCEEDED:
                    return self.job_type.result.model_validate(job.result)
                if JobStatus(job.status).is_terminal:
                    raise JobDidNotSucceed(job)
                await asyncio.sleep(POLL_SECONDS[min(polls, len(POLL_SECONDS) - 1)])
                polls += 1


class Jobgate:
    """A client owning a database engine and a Redis pool; close it (or use `async with`)."""

    def __init__(self, settings: Settings | None = None, *, tenant: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.tenant = tenant
        self._engine = create_engine(self.settings, application_name="jobgate-python")
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self._engine)
        self.redis = create_redis(self.settings)
        self._tenant_ids: dict[str, uuid.UUID] = {}

    async def __aenter__(self) -> Jobgate:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)
        await self._engine.dispose()

    async def tenant_id(self, tenant: str | None = None) -> uuid.UUID:
        """The id of `tenant` (a name or an id; default: the client's tenant)."""
        name = tenant or self.tenant
        if name is None:
            raise ValueError("no tenant: pass tenant=... here or to the client")
        if name not in self._tenant_ids:
            async with self.sessionmaker() as session:
                found = await tenancy.find_tenant(session, tenant=name)
            self._tenant_ids[name] = found.id
        return self._tenant_ids[name]

    async def submit(
        self,
        job_type: JobType[A, R],
        args: A | dict[str, Any],
        *,
        tenant: str | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: Priority | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> JobHandle[R]:
        """Submit one job, as `POST /jobs/{name}` would; `options`: other `SubmitOptions`
        (`start_by=`, `start_within_seconds=`, `max_tries=`, ...)."""
        valid_args = job_type.args.model_validate(args)
        delay_seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        submit_options = SubmitOptions(
            delay_seconds=delay_seconds, run_at=run_at, priority=priority, **options
        )
        tenant_id = await self.tenant_id(tenant)
        async with self.sessionmaker() as session:
            created = await create_jobs(
                self.redis,
                InSession(
                    session, tenant_id, settings=self.settings, idempotency_key=idempotency_key
                ),
                Submission(job_type, [(valid_args, submit_options)]),
            )
        job_id = created.rows[0]["id"] if created.replayed is None else created.replayed.id
        return JobHandle(id=job_id, tenant_id=tenant_id, job_type=job_type, client=self)

    async def job(self, job_id: uuid.UUID, *, tenant_id: uuid.UUID) -> Job:
        """A job of this tenant, as it is now."""
        async with self.sessionmaker() as session:
            return await store.get_job(session, tenant_id=tenant_id, job_id=job_id)

    async def attempts(self, job_id: uuid.UUID, *, tenant_id: uuid.UUID) -> list[AttemptOut]:
        """A job of this tenant's attempts so far, oldest first."""
        async with self.sessionmaker() as session:
            found = await read_attempts(session, tenant_id=tenant_id, job_id=job_id)
        return found.attempts


@dataclass(frozen=True)
class SyncJobHandle(Generic[R]):
    """`JobHandle` for code without an event loop."""

    handle: JobHandle[R]
    client: SyncJobgate

    @property
    def id(self) -> uuid.UUID:
        return self.handle.id

    def result(self, timeout: float | None = None) -> R:
        """Block until the job is finished; its result (see `JobHandle.result`)."""
        return self.client.run(self.handle.result(timeout))

    def attempts(self) -> list[AttemptOut]:
        """The job's attempts so far (see `JobHandle.attempts`)."""
        return self.client.run(self.handle.attempts())


class SyncJobgate:
    """`Jobgate` for callers without an event loop (Flask, scripts): it runs its own, in a
    daemon thread, and every call blocks until that loop has done the work."""

    def __init__(self, settings: Settings | None = None, *, tenant: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.client = self.run(self._make(settings, tenant))

    @staticmethod
    async def _make(settings: Settings | None, tenant: str | None) -> Jobgate:
        return Jobgate(settings, tenant=tenant)  # built on its loop, where it will be used

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(
        self, job_type: JobType[A, R], args: A | dict[str, Any], **options: Any
    ) -> SyncJobHandle[R]:
        """`Jobgate.submit`, blocking."""
        return SyncJobHandle(self.run(self.client.submit(job_type, args, **options)), self)

    def close(self) -> None:
        self.run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass
class _Defaults:
    settings: Settings | None = None
    tenant: str | None = None
    client: Jobgate | None = None
    sync_client: SyncJobgate | None = None


_DEFAULTS = _Defaults()


def configure(settings: Settings | None = None, *, tenant: str | None = None) -> None:
    """Set what `JobType.submit` / `submit_sync` use: settings (default: the environment's) and
    the tenant. Clients are made on first use; `shutdown()` closes them."""
    _DEFAULTS.settings, _DEFAULTS.tenant = settings, tenant


def default_client() -> Jobgate:
    """The process's `Jobgate`, made from `configure(...)` on first use."""
    if _DEFAULTS.client is None:
        _DEFAULTS.client = Jobgate(_DEFAULTS.settings, tenant=_DEFAULTS.tenant)
    return _DEFAULTS.client


def default_sync_client() -> SyncJobgate:
    """The process's `SyncJobgate`, made from `configure(...)` on first use."""
    if _DEFAULTS.sync_client is None:
        _DEFAULTS.sync_client = SyncJobgate(_DEFAULTS.settings, tenant=_DEFAULTS.tenant)
    return _DEFAULTS.sync_client


async def shutdown() -> None:
    """Close the default clients (made by `JobType.submit` / `submit_sync`)."""
    client, sync_client = _DEFAULTS.client, _DEFAULTS.sync_client
    _DEFAULTS.client = _DEFAULTS.sync_client = None
    if client is not None:
        await client.close()
    if sync_client is not None:
        await asyncio.to_thread(sync_client.close)
