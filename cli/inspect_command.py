"""`jobgate inspect`: workers alive, jobs in flight, queue depths, recent failures (all tenants)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import typer
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from cli.inspection import Inspection, inspect_system
from shared.contracts import load_contracts
from shared.db import create_engine, create_sessionmaker
from shared.jobs.queue_stats import PRIORITIES
from shared.redis import create_redis
from shared.settings import Settings, get_settings


async def _gather(settings: Settings, *, running: int, failures: int) -> Inspection:
    engine = create_engine(settings, application_name="jobgate-cli")
    redis = create_redis(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            return await inspect_system(
                session,
                redis,
                queues=load_contracts(settings.contract_modules).queues(),
                running_limit=running,
                failures_limit=failures,
            )
    finally:
        await redis.aclose(close_connection_pool=True)
        await engine.dispose()


def inspect(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    running: Annotated[
        int, typer.Option(min=0, max=10_000, help="Running jobs to list, longest first.")
    ] = 50,
    failures: Annotated[
        int, typer.Option(min=0, max=1000, help="Recent failed jobs to list, newest first.")
    ] = 10,
) -> None:
    """Workers alive, jobs in flight, queue depths by priority and recent failures."""
    try:
        found = asyncio.run(_gather(get_settings(), running=running, failures=failures))
    except (RedisError, OSError, SQLAlchemyError) as exc:
        typer.echo(f"error: cannot read Redis or PostgreSQL ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    typer.echo(found.model_dump_json(indent=2) if as_json else render(found))


def render(found: Inspection) -> str:
    """The inspection as plain-text tables, one section each."""
    return "\n\n".join([_workers(found), _queues(found), _running(found), _failures(found)])


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
