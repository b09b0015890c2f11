"""ARQ worker configuration built from jobgate's settings and job registry.

Each named queue is its own ARQ queue (a sorted set); a worker process serves several queues,
one ARQ worker each (`worker.process`), whether started as `jobgate worker` or as
`arq worker.WorkerSettings` (`worker.arq_command`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any, cast

from arq.worker import func
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.contracts import DEFAULT_QUEUE, Registry, load_contracts
from shared.db import create_engine, create_sessionmaker
from shared.jobs.retention import Retention
from shared.jobs.schedules import SCHEDULES, SYSTEM_TENANT
from shared.jobs.status_changes import Success, record_successes
from shared.keys import queue_key
from shared.redis import arq_redis_settings, deserialize_payload, serialize_payload
from shared.settings import Settings
from shared.tenants.tenancy import ensure_tenant
from shared.tracing import configure_tracing
from worker.binding import Binding, load_bindings
from worker.context import JobRunContext, WorkerContext
from worker.cron import schedule_forever
from worker.deadlines import DeadlineSweep
from worker.group_commit import GroupCommit
from worker.lease import Leases
from worker.quota import TenantQuotas
from worker.reconciler import reconcile_forever
from worker.runner import run_job
from worker.scheduling import Promoter
from worker.webhook_sender import deliver_forever

# ARQ's own try counter must never stop a job: the job row's `max_tries` decides, in the runner.
ARQ_MAX_TRIES = 10_000
# Longest attempt ARQ lets run; each job's own `timeout_seconds` (≤ 7 days) is enforced first.
ARQ_TIMEOUT_SECONDS = 7 * 24 * 3600 + 60
BACKGROUND_STOP_RETRY_SECONDS = 0.1


async def _arq_function(
    ctx: dict[str, Any], *, tenant_id: str, concurrency_key: str | None = None
) -> None:
    """What ARQ registers under each job type's name; `worker.loop` calls `run_job` itself."""
    await run_job(cast(JobRunContext, ctx), tenant_id=tenant_id)


def worker_name() -> str:
    """This process's identity, as `health_check` reports it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _on_startup(
    settings: Settings, bindings: dict[str, Binding], shared_engine: AsyncEngine | None
) -> Any:
    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_tracing(settings, service_name="jobgate-worker")
        # A worker process (`jobgate worker` or `arq worker.WorkerSettings`) passes one engine
        # to all its queues (one pool, disposed by `run_workers`); a worker built on its own
        # (the test fixtures, `worker.testing`) makes and disposes its own.
        engine = shared_engine or create_engine(settings, application_name="jobgate-worker")
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            system_tenant_id = await ensure_tenant(session, name=SYSTEM_TENANT)
        leases = Leases(ctx["redis"], settings.worker_lease_seconds)
        retention = Retention.of([binding.job_type for binding in bindings.values()], settings)
        promoter = Promoter(ctx["redis"], settings.worker_poll_delay_seconds)
        background = [
            asyncio.create_task(leases.renew_forever(), name="jobgate-leases"),
            asyncio.create_task(promoter.run_forever(), name="jobgate-promote-due"),
            asyncio.create_task(
                deliver_forever(sessionmaker, settings.webhooks), name="jobgate-webhooks"
            ),
            asyncio.create_task(
                reconcile_forever(
                    sessionmaker,
                    ctx["redis"],
                    interval_seconds=settings.reconcile_interval_seconds,
                    grace_seconds=settings.reconcile_grace_seconds,
                    sweep=DeadlineSweep(engine, sessionmaker, ctx["redis"], retention, settings),
                    settings=settings,
                ),
                name="jobgate-reconciler",
            ),
        ]
        if settings.worker_run_schedules:
            background.append(
                asyncio.create_task(
                    schedule_forever(
                        sessionmaker,
                        ctx["redis"],
                        settings=settings,
                        schedules=SCHEDULES,
                        tenant_id=system_tenant_id,
                    ),
                    name="jobgate-schedules",
                )
            )
        context = WorkerContext(
            redis=ctx["redis"],
            settings=settings,
            engine=engine,
            owns_engine=shared_engine is None,
            sessionmaker=sessionmaker,
            # The same pool; each status change is one statement, so it needs no BEGIN/COMMIT.
            autocommit_sessionmaker=create_sessionmaker(
                engine.execution_options(isolation_level="AUTOCOMMIT")
            ),
            bindings=bindings,
            retention=retention,
            leases=leases,
            promoter=promoter,
            successes=_success_recorder(engine),
            worker_name=worker_name(),
            system_tenant_id=system_tenant_id,
            background=background,
            quotas=TenantQuotas(
                sessionmaker,
                default=settings.tenant_max_concurrent_jobs,
                ttl_seconds=settings.worker_tenant_limits_cache_seconds,
            ),
        )
        ctx.update(context)

    return on_startup


def _success_recorder(engine: AsyncEngine) -> GroupCommit[Success, bool]:
    async def record(successes: list[Success]) -> list[bool]:
        moved = await record_successes(engine, successes)
        return [success.key in moved for success in successes]

    return GroupCommit(record)


async def _stop_background(task: asyncio.Task[None]) -> None:
    # A cancellation that lands while a Redis connection is being set up can be swallowed
    # below us, leaving the loop running and the drain waiting on it for good: cancel again
    # on every wait, until the task has really ended.
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=BACKGROUND_STOP_RETRY_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _on_shutdown(ctx: dict[str, Any]) -> None:
    for task in ctx.get("background", []):
        await _stop_background(task)
    engine = ctx.get("engine")
    if engine is not None and ctx.get("owns_engine"):
        await engine.dispose()


def worker_options(
    settings: Settings,
    *,
    queue: str = DEFAULT_QUEUE,
    registry: Registry | None = None,
    engine: AsyncEngine | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` serving one jobgate queue.

    `engine`: the process's engine, shared with its other queues and disposed by its owner;
    without one, the worker makes its own at start-up and disposes it at shutdown.
    """
    registry = registry or load_contracts(settings.contract_modules)
    bindings = load_bindings(registry, settings.job_modules)
    functions = [
        func(
            _arq_function,
            name=job_type.name,
            max_tries=ARQ_MAX_TRIES,
            timeout=ARQ_TIMEOUT_SECONDS,
            keep_result=0,
        )
        for job_type in registry
        if queue in job_type.queues
    ]
    max_jobs = settings.worker_queue_concurrency.get(queue, settings.worker_max_jobs)
    return {
        "functions": functions,
        "queue_name": queue_key(queue),
        "redis_settings": arq_redis_settings(settings),
        "on_startup": _on_startup(settings, bindings, engine),
        "on_shutdown": _on_shutdown,
        "job_serializer": serialize_payload,
        "job_deserializer": deserialize_payload,
        "max_jobs": max_jobs,
        # ARQ starts every id it read before it reads again: a job that lands at the front of
        # the queue (another tenant's, a critical one) waits for at most these rounds.
        "queue_read_limit": settings.worker_read_ahead_rounds * max_jobs,
        "poll_delay": settings.worker_poll_delay_seconds,
        "keep_result": 0,
        "allow_abort_jobs": True,
        "health_check_key": f"jobgate:worker-health:{queue}",
    }
