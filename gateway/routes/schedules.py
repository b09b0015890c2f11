"""`GET /schedules`: the cron schedules the workers run, with their next run time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shared.jobs.schedules import SCHEDULES

router = APIRouter(tags=["schedules"])


class ScheduleOut(BaseModel):
    name: str
    job_type: str
    cron: str = Field(description="5-field cron expression, in UTC.")
    args: dict[str, Any]
    queue: str
    description: str
    next_run_at: datetime


@router.get("/schedules", operation_id="list_schedules", summary="List the cron schedules")
async def list_schedules() -> list[ScheduleOut]:
    """Every schedule, with the time of its next run (UTC).

    Each run is recorded as a job of the `_system` tenant, labelled `schedule=<name>`.
    """
    now = datetime.now(UTC)
    return [
        ScheduleOut(
            name=item.name,
            job_type=item.job_type.name,
            cron=item.cron,
            args=item.args,
            queue=item.job_type.queue,
            description=item.description,
            next_run_at=item.next_tick(now),
        )
        for item in SCHEDULES
    ]
