"""The scheduler every worker runs: at each tick of each schedule, submit one job.

Several workers reach the same tick; the idempotency key `cron:<schedule>:<tick>` and its
unique index let exactly one of them insert the job, and only that one enqueues it. A tick
that passes while no worker runs is skipped, as with Celery beat.

A tick whose submit fails (Redis refuses the hand-off, PostgreSQL is down) leaves no run
behind: the submit is undone, its key free again (`shared.jobs.submit.create_jobs`). The
worker that failed tries the same tick again every `TICK_RETRY_SECONDS` until it runs or the
schedule's next tick has come; only then is it given up, logged as `cron.skipped`. (Another
worker that found the row before it was undone counts the tick as taken; the retry covers it.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from arq.connections import ArqRedis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import JobgateError
from shared.jobs.schedules import Schedule, Schedules
from shared.jobs.submit import InSession, Submission, SubmitOptions, create_jobs
from shared.settings import Settings

log = structlog.get_logger("jobgate.worker")

MAX_SLEEP_SECONDS = 1.0
TICK_RETRY_SECONDS = 5.0
"""How soon a tick whose submit failed is tried again (while its schedule's next tick has not
come)."""


async def run_tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    settings: Settings,
    schedule: Schedule,
    tick: datetime,
    tenant_id: uuid.UUID,
) -> bool:
    """Submit the job of one tick; False if another worker already did."""
    options = SubmitOptions(priority=schedule.priority, labels={"schedule": schedule.name})
    async with sessionmaker() as session:
        created = await create_jobs(
            redis,
            InSession(
                session,
                tenant_id,
                settings=settings,
                idempotency_key=schedule.idempotency_key(tick),
            ),
            Submission(
                schedule.job_type, [(schedule.job_type.args.model_validate(schedule.args), options)]
            ),
        )
    if created.is_new:
        log.info("cron.submitted", schedule=schedule.name, tick=tick.isoformat())
    return created.is_new


@dataclass(frozen=True)
class Slot:
    """A schedule's next tick to run, and when to try it (later than the tick after a failure)."""

    tick: datetime
    attempt_at: datetime


def _first_slot(schedule: Schedule, after: datetime) -> Slot:
    tick = schedule.next_tick(after)
    return Slot(tick=tick, attempt_at=tick)


async def run_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    settings: Settings,
    schedules: Iterable[Schedule],
    slots: dict[str, Slot],
    tenant_id: uuid.UUID,
    now: datetime,
) -> None:
    """Run every slot whose attempt time has come; move each on to what is due next."""
    for schedule in schedules:
        slot = slots[schedule.name]
        if slot.attempt_at > now:
            continue
        try:
            await run_tick(
                sessionmaker,
                redis,
                settings=settings,
                schedule=schedule,
                tick=slot.tick,
                tenant_id=tenant_id,
            )
        except (JobgateError, DBAPIError, OSError) as exc:
            error = type(exc).__name__
            if schedule.next_tick(slot.tick) > now:  # still this tick's turn: try it again
                retry_at = now + timedelta(seconds=TICK_RETRY_SECONDS)
                slots[schedule.name] = Slot(tick=slot.tick, attempt_at=retry_at)
                log.warning("cron.failed", schedule=schedule.name, error=error, retrying=True)
                continue
            log.warning("cron.skipped", schedule=schedule.name, tick=slot.tick.isoformat())
        slots[schedule.name] = _first_slot(schedule, now)


async def schedule_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    settings: Settings,
    schedules: Schedules,
    tenant_id: uuid.UUID,
) -> None:
    """Submit each schedule's job at each of its ticks, for as long as the worker runs."""
    now = datetime.now(UTC)
    slots = {item.name: _first_slot(item, now) for item in schedules}
    if not slots:
        return
    while True:
        await run_due(
            sessionmaker,
            redis,
            settings=settings,
            schedules=schedules,
            slots=slots,
            tenant_id=tenant_id,
            now=datetime.now(UTC),
        )
        now = datetime.now(UTC)
        wait = min((slot.attempt_at - now).total_seconds() for slot in slots.values())
        await asyncio.sleep(min(max(wait, 0.01), MAX_SLEEP_SECONDS))
