"""`jobgate jobs ...` and `jobgate dlq ...`: operator commands over jobs of any tenant."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import load_contracts
from shared.db import create_engine, create_sessionmaker
from shared.errors import JobgateError, JobNotFound, QueueUnavailable
from shared.jobs import control, operator_queries
from shared.jobs.cancel import Cancelled
from shared.redis import create_redis
from shared.settings import get_settings
from shared.tenants import tenancy

T = TypeVar("T")

jobs = typer.Typer(help="Operate on jobs of any tenant.", no_args_is_help=True)
dlq = typer.Typer(help="The dead-letter view: jobs that ended `failed`.", no_args_is_help=True)


def run_operator_action(action: Callable[[AsyncSession, ArqRedis], Awaitable[T]]) -> T:
    """Run one action with a database session and a Redis client; errors exit with a message."""
    settings = get_settings()

    async def main() -> T:
        engine = create_engine(settings, application_name="jobgate-cli")
        redis = create_redis(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return await action(session, redis)
        finally:
            await redis.aclose(close_connection_pool=True)
            await engine.dispose()

    try:
        return asyncio.run(main())
    except JobgateError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@jobs.command("cancel")
def jobs_cancel(job_id: uuid.UUID) -> None:
    """Cancel one job: a waiting job never runs, a running one is aborted."""

    async def action(session: AsyncSession, redis: ArqRedis) -> Cancelled:
        tenant_id = await operator_queries.tenant_of_job(session, job_id)
        if tenant_id is None:
            raise JobNotFound()
        return await control.cancel_job(
            session,
            redis,
            tenant_id=tenant_id,
            job_id=job_id,
            registry=load_contracts(get_settings().contract_modules),
            settings=get_settings(),
        )

    outcome = run_operator_action(action)
    typer.echo(f"{job_id}: {'cancelled' if outcome.is_done else 'abort requested (running)'}")


@jobs.command("purge")
def jobs_purge(
    tenant: Annotated[str | None, typer.Option(help="Tenant id or name.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    name: Annotated[str | None, typer.Option(help="Only this job type.")] = None,
) -> None:
    """Cancel every waiting job of a tenant, or of a queue across tenants; prints the count."""
    if tenant is None and queue is None:
        typer.echo("error: give --tenant, --queue or both", err=True)
        raise typer.Exit(2)

    async def action(session: AsyncSession, redis: ArqRedis) -> int:
        if tenant is not None:
            tenant_ids = [(await tenancy.find_tenant(session, tenant=tenant)).id]
        else:
            assert queue is not None  # noqa: S101 (checked above)
            tenant_ids = await operator_queries.tenants_with_waiting_jobs(session, queue=queue)
        total = 0
        for tenant_id in tenant_ids:
            total += await control.purge_waiting(
                session, redis, tenant_id=tenant_id, queue=queue, name=name
            )
        return total

    typer.echo(f"purged {run_operator_action(action)} waiting jobs")


@dlq.command("list")
def dlq_list(
    name: Annotated[str | None, typer.Option(help="Only this job type.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant id or name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    ids: Annotated[
        bool, typer.Option("--ids", help="Show tenant ids instead of tenant names.")
    ] = False,
) -> None:
    """Failed jobs, newest first: id, tenant name (or id), type, attempts, error."""

    async def action(session: AsyncSession, _redis: ArqRedis) -> list[str]:
        tenant_id = (await tenancy.find_tenant(session, tenant=tenant)).id if tenant else None
        failed = await operator_queries.failed_jobs(
            session, name=name, tenant_id=tenant_id, limit=limit
        )
        names = (
            {}
            if ids
            else await operator_queries.tenant_names(session, {job.tenant_id for job in failed})
        )
        return [
            f"{job.id}  {names.get(job.tenant_id, job.tenant_id)}  {job.name:<16} "
            f"tries={job.attempts}/{job.max_tries}  "
            f"{(job.error or {}).get('type', '-')}: {(job.error or {}).get('message', '')[:80]}"
            + (f"  (re-run as {job.retried_by})" if job.retried_by else "")
            for job in failed
        ]

    lines = run_operator_action(action)
    typer.echo("\n".join(lines) if lines else "no failed jobs")


@dlq.command("retry")
def dlq_retry(
    name: Annotated[str | None, typer.Option(help="Only this job type.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant id or name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
) -> None:
    """Re-run failed jobs that were not re-run yet, each as a new linked job."""

    async def action(session: AsyncSession, redis: ArqRedis) -> int:
        tenant_id = (await tenancy.find_tenant(session, tenant=tenant)).id if tenant else None
        failed = await operator_queries.failed_jobs(
            session, name=name, tenant_id=tenant_id, only_unretried=True, limit=limit
        )
        refs = [(job.tenant_id, job.id) for job in failed]
        await session.commit()
        settings = get_settings()
        registry = load_contracts(settings.contract_modules)
        for done, (job_tenant, job_id) in enumerate(refs):
            try:
                # An operator's repair: not charged to the tenant's rate limit.
                await control.retry_job(
                    session,
                    redis,
                    tenant_id=job_tenant,
                    job_id=job_id,
                    registry=registry,
                    rate=None,
                    settings=settings,
                )
            except QueueUnavailable as exc:  # that one was undone; the rest were not tried
                raise QueueUnavailable(
                    f"re-queued {done} failed jobs, then stopped: {exc.message}"
                ) from exc
        return len(refs)

    typer.echo(f"re-queued {run_operator_action(action)} failed jobs")
