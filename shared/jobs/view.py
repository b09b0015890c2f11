"""The Job resource as callers see it: the API's responses and the body of every webhook.

It lives in `shared` because the gateway (`gateway.schemas` re-exports it) and the worker's
webhook sender render the same JSON; the gateway imports `shared`, never the other way.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import Priority
from shared.models import Job, WebhookDelivery
from shared.status import JobStatus
from shared.webhooks.deliveries import deliveries_by_job


class JobError(BaseModel):
    type: str = Field(
        description="`timeout`, `permanent`, `invalid_args`, `cancelled` (with the reason as the"
        " message), or the error's class."
    )
    message: str


class JobProgress(BaseModel):
    current: int
    total: int | None = None
    message: str | None = None


class WebhookDeliveryOut(BaseModel):
    """One call of the job's webhook, and how it went so far."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Sent as `X-Jobgate-Delivery`; the same on every retry.")
    status: Literal["pending", "delivered", "failed"] = Field(
        description="`pending` (being tried), `delivered` (a 2xx answer) or `failed` (gave up)."
    )
    attempts: int
    last_status_code: int | None = Field(description="HTTP status of the last attempt, if any.")
    delivered_at: datetime | None


class JobWebhook(BaseModel):
    url: str
    deliveries: list[WebhookDeliveryOut] = Field(
        description="Empty until the job is terminal; then its call (`job.<status>`)."
    )


class JobOut(BaseModel):
    """A job, as callers see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    status: JobStatus
    args: dict[str, Any] = Field(description="As validated against the job type's Args model.")
    result: dict[str, Any] | None = Field(description="Matches the job type's Result model.")
    error: JobError | None
    priority: Priority
    queue: str
    attempts: int
    max_tries: int
    timeout_seconds: float
    progress: JobProgress | None
    idempotency_key: str | None
    concurrency_key: str | None = Field(
        description="The key its type's concurrency limit counts it under (null: none)."
    )
    labels: dict[str, str]
    retry_of: uuid.UUID | None
    retried_by: uuid.UUID | None
    created_at: datetime
    scheduled_at: datetime | None
    start_by: datetime | None = Field(
        description="Start deadline: not started by then, the job ends `expired`; null: none."
    )
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    webhook: JobWebhook | None = Field(
        None, description="The submit's `webhook_url` and its delivery; null without one."
    )

    @classmethod
    def of(cls, job: Job, deliveries: Sequence[WebhookDelivery] = ()) -> JobOut:
        """The job's view; pass its webhook deliveries to show them (`job_view` loads them)."""
        return cls.model_validate(job)._with_webhook(job.webhook_url, deliveries)

    @classmethod
    def of_new(cls, row: Mapping[str, Any]) -> JobOut:
        """A just-submitted job's view from its column values (no ORM object, no deliveries)."""
        return cls.model_validate(_NEW_JOB | dict(row))._with_webhook(row["webhook_url"], ())

    def _with_webhook(self, url: str | None, deliveries: Sequence[WebhookDelivery]) -> JobOut:
        if url is None:
            return self
        webhook = JobWebhook(
            url=url, deliveries=[WebhookDeliveryOut.model_validate(item) for item in deliveries]
        )
        return self.model_copy(update={"webhook": webhook})


_NEW_JOB: dict[str, Any] = dict.fromkeys(
    (
        "result",
        "error",
        "progress",
        "idempotency_key",
        "retry_of",
        "retried_by",
        "started_at",
        "finished_at",
        "expires_at",
    )
)
"""What a job submitted a moment ago has not got yet."""


async def job_views(
    session: AsyncSession, *, tenant_id: uuid.UUID, jobs: Sequence[Job]
) -> list[JobOut]:
    """The tenant's jobs as callers see them, deliveries included (at most one more query)."""
    hooked = [job.id for job in jobs if job.webhook_url is not None]
    deliveries = await deliveries_by_job(session, tenant_id=tenant_id, job_ids=hooked)
    return [JobOut.of(job, deliveries.get(job.id, ())) for job in jobs]


async def job_view(session: AsyncSession, job: Job) -> JobOut:
    """One job as callers see it, its webhook deliveries included."""
    (view,) = await job_views(session, tenant_id=job.tenant_id, jobs=[job])
    return view
