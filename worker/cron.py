"""The scheduler every worker runs: at each tick of each schedule, submit one job.

Several workers reach the same tick; the idempotency key `cron:<schedule>:<tick>` and its
unique index let exactly one of them insert the job, and only that one enqueues it. A tick
that passes while no worker runs is skipped, as with Celery beat.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import structlog
from arq.connections import ArqRedis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import JobgateError
from shared.schedules import Schedule, Schedules
from shared.submit import SubmitOptions, submit_once

log = structlog.get_logger("jobgate.worker")

MAX_SLEEP_SECONDS = 1.0


async def run_tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    schedule: Schedule,
    tick: datetime,
    tenant_id: uuid.UUID,
) -> bool:
    """Submit the job of one tick; False if another worker already did."""
    options = SubmitOptions(priority=schedule.priority, labels={"schedule": schedule.name})
    async with sessionmaker() as session:
        submitted = await submit_once(
            session,
            redis,
            tenant_id=tenant_id,
            job_type=schedule.job_type,
            args=schedule.job_type.args.model_validate(schedule.args),
            options=options,
            idempotency_key=schedule.idempotency_key(tick),
        )
    if submitted.is_new:
        log.info("cron.submitted", schedule=schedule.name, tick=tick.isoformat())
    return submitted.is_new


async def schedule_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    schedules: Schedules,
    tenant_id: uuid.UUID,
) -> None:
    """Submit each schedule's job at each of its ticks, for as long as the worker runs."""
    now = datetime.now(UTC)
    due = {item.name: item.next_tick(now) for item in schedules}
    by_name = {item.name: item for item in schedules}
    if not due:
        return
    while True:
        now = datetime.now(UTC)
        for name, tick in list(due.items()):
            if tick > now:
                continue
            try:
                await run_tick(
                    sessionmaker, redis, schedule=by_name[name], tick=tick, tenant_id=tenant_id
                )
            except (JobgateError, DBAPIError, OSError) as exc:
                # The tick is lost, not the schedule: log and move on to the next tick.
                log.warning("cron.failed", schedule=name, error=type(exc).__name__)
            due[name] = by_name[name].next_tick(now)
        wait = min((tick - datetime.now(UTC)).total_seconds() for tick in due.values())
        await asyncio.sleep(min(max(wait, 0.01), MAX_SLEEP_SECONDS))
