"""Cron schedules: declared in code, run by every worker, recorded as jobs of the system tenant.

A schedule names a job type, its args and when to run, as a 5-field cron expression or as
ARQ `cron()`-style keyword sets. Each tick becomes one job whose idempotency key is
`cron:<schedule>:<tick>`; the unique index on (tenant, key) makes the tick run once however
many workers reach it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from shared.contracts import HEALTH_CHECK, PURGE_EXPIRED, JobType, Priority

SYSTEM_TENANT = "_system"
"""Owner of scheduled runs; names starting with `_` are reserved for jobgate."""


def _field(values: int | Iterable[int] | None) -> str:
    if values is None:
        return "*"
    if isinstance(values, int):
        return str(values)
    return ",".join(str(value) for value in sorted(values))


def cron_expression(
    *,
    minute: int | Iterable[int] | None = None,
    hour: int | Iterable[int] | None = None,
    day: int | Iterable[int] | None = None,
    month: int | Iterable[int] | None = None,
    weekday: int | Iterable[int] | None = None,
) -> str:
    """The 5-field cron expression for ARQ-style `cron()` parameters (None means every)."""
    if all(value is None for value in (minute, hour, day, month, weekday)):
        raise ValueError("give at least one of minute, hour, day, month, weekday")
    return " ".join(_field(value) for value in (minute, hour, day, month, weekday))


@dataclass(frozen=True)
class Schedule:
    """Run `job_type` with `args` at every tick of `cron`."""

    name: str
    job_type: JobType[Any, Any]
    cron: str
    args: dict[str, Any] = field(default_factory=dict)
    priority: Priority | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron) or len(self.cron.split()) != 5:
            raise ValueError(f"schedule {self.name!r}: {self.cron!r} is not a 5-field cron")
        self.job_type.args.model_validate(self.args)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after `after` (UTC)."""
        tick: datetime = croniter(self.cron, after.astimezone(UTC)).get_next(datetime)
        return tick.astimezone(UTC)

    def idempotency_key(self, tick: datetime) -> str:
        """The key that makes one tick run once across all workers."""
        return f"cron:{self.name}:{tick.astimezone(UTC).isoformat()}"


class Schedules:
    """Schedules by name."""

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule] = {}

    def add(self, schedule: Schedule) -> Schedule:
        if schedule.name in self._schedules:
            raise ValueError(f"schedule {schedule.name!r} is declared twice")
        self._schedules[schedule.name] = schedule
        return schedule

    def __iter__(self) -> Iterator[Schedule]:
        return iter(sorted(self._schedules.values(), key=lambda schedule: schedule.name))


SCHEDULES = Schedules()


def schedule(
    name: str,
    job_type: JobType[Any, Any],
    *,
    cron: str | None = None,
    args: dict[str, Any] | None = None,
    description: str = "",
    **cron_fields: Any,
) -> Schedule:
    """Declare a schedule: `cron="*/5 * * * *"` or ARQ-style `minute={0, 30}`, `hour=3`, ..."""
    expression = cron if cron is not None else cron_expression(**cron_fields)
    return SCHEDULES.add(
        Schedule(
            name=name,
            job_type=job_type,
            cron=expression,
            args=args or {},
            description=description or job_type.description,
        )
    )


# Built-in schedules.
schedule(
    "purge_expired",
    PURGE_EXPIRED,
    cron="* * * * *",
    description="Delete jobs whose retention (`expires_at`) has passed.",
)
schedule(
    "health_check",
    HEALTH_CHECK,
    cron="*/5 * * * *",
    description="Prove every five minutes that a worker is consuming.",
)
