"""Response bodies of the HTTP API (request bodies of submits are built from the contracts)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import ConcurrencyStrategy, JobType, Priority, RateLimit
from shared.jobs.queue_pauses import QueueState
from shared.jobs.view import JobError, JobOut, JobProgress, JobWebhook, WebhookDeliveryOut
from shared.models import ApiKey, Tenant
from shared.tenants.apikeys import Scope
from shared.tenants.tenancy import TenantLimits

__all__ = ["JobError", "JobOut", "JobProgress", "JobWebhook", "WebhookDeliveryOut"]


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class JobTypeDefaults(BaseModel):
    priority: Priority
    max_tries: int
    timeout_seconds: float
    result_ttl_seconds: int | None
    backoff_base_seconds: float
    backoff_max_seconds: float
    start_within_seconds: float | None = Field(
        description="Start deadline of a submit that sets none; null: no deadline."
    )


class RateLimitOut(BaseModel):
    """At most `count` starts per `per_seconds`, spaced evenly, over all workers; jobs over it
    wait (no try used). With `key`, per tenant and value of that Args field; else for the type
    across every tenant."""

    count: int = Field(description="Starts allowed per period.")
    per_seconds: float = Field(description="The period, in seconds.")
    burst: int = Field(description="How many more may start at once after a quiet spell.")
    key: str | None = Field(description="Dotted path into the args the limit is kept per.")

    @classmethod
    def of(cls, limit: RateLimit) -> RateLimitOut:
        return cls(
            count=limit.count, per_seconds=limit.per_seconds, burst=limit.burst, key=limit.key
        )


class ConcurrencyOut(BaseModel):
    key: str = Field(
        description="The field of `args` (a dotted path) the key is read from; a submit may give"
        " its own (`options.concurrency_key`)."
    )
    limit: int = Field(description="At most this many jobs with one key run at once.")
    strategy: ConcurrencyStrategy = Field(
        description="A job that finds its key at the limit: `queue` waits its turn;"
        " `cancel_in_progress` cancels the oldest unfinished jobs of the key (latest wins);"
        " `cancel_newest` is cancelled at submit."
    )


class JobTypeOut(BaseModel):
    name: str
    description: str
    queue: str = Field(description="Where its jobs run unless a submit's `options.queue` says.")
    queues: list[str] = Field(
        description="Every queue its jobs may run on (`options.queue`), `queue` first."
    )
    defaults: JobTypeDefaults
    concurrency: ConcurrencyOut | None = Field(
        description="Jobs of this type with the same key (a tenant's own) running at once;"
        " null: no such limit."
    )
    args_schema: dict[str, Any]
    result_schema: dict[str, Any]
    examples: list[dict[str, Any]] = Field(description="Valid `args`, as a caller sends them.")
    rate_limit: RateLimitOut | None = Field(description="Null: starts are not rate-limited.")

    @classmethod
    def of(cls, job_type: JobType[Any, Any]) -> JobTypeOut:
        return cls(
            name=job_type.name,
            description=job_type.description,
            queue=job_type.queue,
            queues=list(job_type.queues),
            defaults=JobTypeDefaults(
                priority=job_type.priority,
                max_tries=job_type.max_tries,
                timeout_seconds=job_type.timeout_seconds,
                result_ttl_seconds=job_type.result_ttl_seconds,
                backoff_base_seconds=job_type.backoff.base_seconds,
                backoff_max_seconds=job_type.backoff.max_seconds,
                start_within_seconds=job_type.start_within_seconds,
            ),
            concurrency=None
            if job_type.concurrency is None
            else ConcurrencyOut(
                key=job_type.concurrency.key,
                limit=job_type.concurrency.limit,
                strategy=job_type.concurrency.strategy,
            ),
            args_schema=job_type.args.model_json_schema(),
            result_schema=job_type.result.model_json_schema(),
            examples=list(job_type.examples),
            rate_limit=RateLimitOut.of(job_type.rate_limit) if job_type.rate_limit else None,
        )


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str | None
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None


class CreatedTenant(BaseModel):
    tenant: TenantOut
    api_key: str = Field(description="The tenant's first key. Shown once; store it now.")
    webhook_secret: str = Field(
        description="Signs the tenant's webhooks (`X-Jobgate-Signature`). Shown once; store it now."
    )


class WebhookSecretOut(BaseModel):
    tenant: TenantOut
    webhook_secret: str = Field(
        description="The new signing secret, in force at once. Shown once; store it now."
    )


class CreatedKey(BaseModel):
    key: ApiKeyOut
    api_key: str = Field(description="The key. Shown once; store it now.")


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.\-]*$")


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100, pattern=r"^[^\x00]*$")
    scopes: list[Scope] = Field(default_factory=lambda: list(Scope), min_length=1)


class TenantLimitsIn(BaseModel):
    """A tenant's limits; a field left out or null means the configured default."""

    model_config = ConfigDict(extra="forbid")

    rate_limit_per_second: float | None = Field(
        None, gt=0, le=1_000_000, description="Jobs it may submit per second, sustained."
    )
    rate_limit_burst: int | None = Field(
        None, ge=1, le=1_000_000, description="Jobs it may submit at once (the bucket's size)."
    )
    max_concurrent_jobs: int | None = Field(
        None, ge=1, le=100_000, description="Its jobs running at once, over all workers."
    )

    def limits(self) -> TenantLimits:
        return TenantLimits(
            rate_limit_per_second=self.rate_limit_per_second,
            rate_limit_burst=self.rate_limit_burst,
            max_concurrent_jobs=self.max_concurrent_jobs,
        )


class TenantLimitsOut(BaseModel):
    tenant: TenantOut
    rate_limit_per_second: float | None = Field(description="Null: the configured default.")
    rate_limit_burst: int | None = Field(description="Null: the configured default.")
    max_concurrent_jobs: int | None = Field(description="Null: the configured default.")


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def tenant_out(tenant: Tenant) -> TenantOut:
    return TenantOut.model_validate(tenant)


def limits_out(tenant: Tenant) -> TenantLimitsOut:
    return TenantLimitsOut(
        tenant=tenant_out(tenant),
        rate_limit_per_second=tenant.rate_limit_per_second,
        rate_limit_burst=tenant.rate_limit_burst,
        max_concurrent_jobs=tenant.max_concurrent_jobs,
    )


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key)


class QueuePauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        None, max_length=500, pattern=r"^[^\x00]*$", description="Why, for other operators."
    )


class QueueOut(BaseModel):
    queue: str
    paused: bool = Field(description="Workers start none of its jobs; submits still queue.")
    paused_at: datetime | None
    paused_by: str | None = Field(description="`api`, `cli` or `dashboard`; null: not paused.")
    reason: str | None
    waiting: dict[Priority, int] = Field(
        description="Jobs due and waiting, by priority (delayed jobs and retries not included)."
    )
    oldest_waiting_age_seconds: float | None = Field(
        description="How long the first job in line has been due; null when none waits."
    )
    running: int = Field(description="Its jobs running now, as live workers last announced.")
    workers: int = Field(description="Live worker processes serving it.")


def queue_out(state: QueueState) -> QueueOut:
    pause = state.pause
    return QueueOut(
        queue=state.queue,
        paused=pause is not None,
        paused_at=None if pause is None else pause.paused_at,
        paused_by=None if pause is None else pause.paused_by,
        reason=None if pause is None else pause.reason,
        waiting=state.waiting,
        oldest_waiting_age_seconds=state.oldest_waiting_age_seconds,
        running=state.running,
        workers=state.workers,
    )
