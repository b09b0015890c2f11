"""`jobgate inspect`: workers alive, jobs in flight, queue depths, recent failures and
expirations (all tenants), the job types and their queues; `jobgate inspect JOB_ID`: one job and
its attempts."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from cli.inspection import Inspection, JobInspection, inspect_job, inspect_system
from shared.contracts import load_contracts
from shared.db import create_engine, create_sessionmaker
from shared.jobs.queue_stats import PRIORITIES
from shared.redis import create_redis
from shared.settings import Settings, get_settings

T = TypeVar("T")
Reader = Callable[[AsyncSession, ArqRedis], Awaitable[T]]
"""What `jobgate inspect` reads, from PostgreSQL and Redis."""


async def _read(settings: Settings, read: Reader[T]) -> T:
    engine = create_engine(settings, application_name="jobgate-cli")
    redis = create_redis(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            return await read(session, redis)
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()


def inspect(
    job_id: Annotated[
        uuid.UUID | None,
        typer.Argument(
            help="One job (any tenant's): its facts and its attempts.", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    running: Annotated[
        int, typer.Option(min=0, max=10_000, help="Running jobs to list, longest first.")
    ] = 50,
    failures: Annotated[
        int,
        typer.Option(
            min=0, max=1000, help="Recent failed jobs, and expired ones, to list, newest first."
        ),
    ] = 10,
) -> None:
    """Workers alive, jobs in flight, queue depths by priority, recent failures and expirations,
    job types, rate limits; with a JOB_ID, that job and each of its attempts."""
    settings = get_settings()
    read: Reader[Inspection | JobInspection | None]
    if job_id is None:
        job_types = list(load_contracts(settings.contract_modules))
        read = functools.partial(
            inspect_system, job_types=job_types, running_limit=running, failures_limit=failures
        )
    else:
        read = functools.partial(inspect_job, job_id=job_id)
    try:
        found = asyncio.run(_read(settings, read))
    except (RedisError, OSError, SQLAlchemyError) as exc:
        typer.echo(f"error: cannot read Redis or PostgreSQL ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    if found is None:
        typer.echo(f"error: no job {job_id}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
    else:
        typer.echo(render(found) if isinstance(found, Inspection) else render_job(found))


def render(found: Inspection) -> str:
    """The inspection as plain-text tables, one section each."""
    sections = [_workers(found), _queues(found), _running(found), _failures(found)]
    sections += [_expirations(found), _job_types(found)]
    if found.rate_limited_types:
        sections.append(_rate_limits(found))
    return "\n\n".join(sections)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return "\n".join(
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _since(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else duration((now - moment).total_seconds())


def _workers(found: Inspection) -> str:
    title = f"workers alive: {len(found.workers)}"
    if not found.workers:
        return title
    rows = [
        [
            worker.name,
            ",".join(worker.queues),
            str(sum(worker.in_flight.values())),
            str(worker.started),
            str(worker.finished),
            _since(worker.since, found.at),
        ]
        for worker in found.workers
    ]
    headers = ["NAME", "QUEUES", "IN FLIGHT", "STARTED", "FINISHED", "UP"]
    return f"{title}\n{table(headers, rows)}"


def _queues(found: Inspection) -> str:
    by_queue: dict[str, dict[str, str]] = {}
    oldest: dict[str, float] = {}
    for line in found.queues:
        by_queue.setdefault(line.queue, {})[line.priority] = str(line.depth)
        oldest[line.queue] = max(oldest.get(line.queue, 0.0), line.oldest_age_seconds or 0.0)
    rows = [
        [
            queue,
            *(depths.get(priority, "0") for priority in PRIORITIES),
            duration(oldest[queue]),
            "paused" if queue in found.paused_queues else "",
        ]
        for queue, depths in by_queue.items()
    ]
    headers = ["QUEUE", *(priority.upper() for priority in PRIORITIES), "OLDEST DUE", "STATE"]
    scheduled = f"scheduled: {found.scheduled_waiting} waiting, {found.scheduled_overdue} overdue"
    by_type = sorted(found.concurrency_waiting.items())
    keyed = ", ".join(f"{name} {count}" for name, count in by_type)
    waiting = f"\nwaiting for a concurrency key: {keyed}" if keyed else ""
    return f"queues (jobs due, by priority)\n{table(headers, rows)}\n{scheduled}{waiting}"


def _running(found: Inspection) -> str:
    title = f"running: {len(found.running)}"
    if not found.running:
        return title
    rows = [
        [
            str(job.id),
            job.name,
            job.queue,
            job.tenant,
            f"{job.attempt}/{job.max_tries}",
            _since(job.started_at, found.at),
            job.worker or "-",
            job.concurrency_key or "-",
        ]
        for job in found.running
    ]
    headers = ["ID", "TYPE", "QUEUE", "TENANT", "TRY", "RUNNING FOR", "WORKER", "KEY"]
    return f"{title}\n{table(headers, rows)}"


def _failures(found: Inspection) -> str:
    title = f"recent failures: {len(found.recent_failures)}"
    if not found.recent_failures:
        return title
    rows = [
        [
            str(job.id),
            job.name,
            job.tenant,
            str(job.attempts),
            _since(job.finished_at, found.at) + " ago",
            f"{job.error_type or '-'}: {(job.error_message or '')[:60]}",
        ]
        for job in found.recent_failures
    ]
    headers = ["ID", "TYPE", "TENANT", "TRIES", "FINISHED", "ERROR"]
    return f"{title}\n{table(headers, rows)}"


def _job_types(found: Inspection) -> str:
    title = "job types (each one's queue first, then the others a submit may pick)"
    rows = [[line.name, ", ".join(line.queues)] for line in found.job_types]
    return f"{title}\n{table(['TYPE', 'QUEUES'], rows)}"


def _moment(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_job(found: JobInspection) -> str:
    """One job's facts, then its attempts as a table (times in UTC)."""
    job = found.job
    facts = [
        f"job {job.id}  {job.name}  tenant {found.tenant}  queue {job.queue}",
        f"status {job.status.value}, try {job.attempts} of {job.max_tries}",
        f"created {_moment(job.created_at)}  started {_moment(job.started_at)}"
        f"  finished {_moment(job.finished_at)} (UTC)",
    ]
    if job.error is not None:
        facts.append(f"error {job.error.type}: {job.error.message}")
    title = f"attempts: {len(found.attempts)}"
    if not found.attempts:
        return "\n".join([*facts, "", title])
    rows = [
        [
            str(attempt.number),
            attempt.outcome,
            attempt.worker or "-",
            _moment(attempt.started_at),
            duration(attempt.duration_seconds),
            "" if attempt.error is None else f"{attempt.error.type}: {attempt.error.message[:60]}",
        ]
        for attempt in found.attempts
    ]
    headers = ["#", "OUTCOME", "WORKER", "STARTED (UTC)", "TOOK", "ERROR"]
    return "\n".join([*facts, "", title, table(headers, rows)])


def _expirations(found: Inspection) -> str:
    title = f"recent expirations (not started by their deadline): {len(found.recent_expirations)}"
    if not found.recent_expirations:
        return title
    rows = [
        [
            str(job.id),
            job.name,
            job.queue,
            job.tenant,
            _since(job.start_by, found.at) + " ago",
        ]
        for job in found.recent_expirations
    ]
    headers = ["ID", "TYPE", "QUEUE", "TENANT", "DEADLINE"]
    return f"{title}\n{table(headers, rows)}"


def _rate_limits(found: Inspection) -> str:
    rows = [
        [
            line.name,
            line.queue,
            line.limit,
            "per key"
            if line.next_free_start_seconds is None
            else duration(line.next_free_start_seconds),
        ]
        for line in found.rate_limited_types
    ]
    headers = ["TYPE", "QUEUE", "RATE LIMIT", "NEXT FREE START IN"]
    return f"rate-limited job types: {len(rows)}\n{table(headers, rows)}"
