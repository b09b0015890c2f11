"""Submitting jobs: validate options, store the rows in one transaction, then hand them to ARQ.

Order matters. Rows are committed before Redis is touched, so a worker never picks up a job
whose row it cannot see. If the hand-off fails, the creation is undone in one transaction (the
rows deleted, with everything that points at them: `store.discard_jobs`, plus what the caller
changed, e.g. a workflow's status) and the caller gets `QueueUnavailable`: a submit or re-run
either returns jobs that will run or leaves no trace. Every path that creates jobs for a
tenant goes through `commit_and_enqueue` (or `submit_fused`, the same steps without a
session). (A crash between commit and hand-off leaves waiting rows that the reconciler
re-enqueues: accepted work still runs.)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self, cast

from arq.connections import ArqRedis
from pydantic import (
    AnyUrl,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    UrlConstraints,
    model_validator,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.contracts import Contract, JobType, Priority
from shared.errors import IdempotencyConflict, QueueUnavailable, Unauthenticated
from shared.ids import new_id
from shared.jobs.enqueue import Delivery, enqueue
from shared.jobs.store import discard_jobs, find_by_idempotency_key, insert_job_once, insert_jobs
from shared.jobs.submit_statement import check_key_and_store, store_jobs
from shared.jobs.transitions import ClaimedJob
from shared.models import Job
from shared.settings import Settings
from shared.status import JobStatus
from shared.tenants.apikeys import Scope, hash_secret, parse_token, secret_matches
from shared.tenants.ratelimit import RateState, rate_limit_for, take_tokens
from shared.tenants.tenancy import UNKNOWN_KEY, check_scope
from shared.tracing import current_traceparent, submit_span

MAX_DELAY_SECONDS = 366 * 24 * 3600
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.\-/]+$")]
LabelValue = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]
WebhookUrl = Annotated[
    AnyUrl, UrlConstraints(max_length=2048, allowed_schemes=["http", "https"], host_required=True)
]


def _rfc3339_text_only(value: object) -> object:
    """Refuse numbers: pydantic would read them as Unix times, the contract says RFC 3339."""
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


class SubmitOptions(BaseModel):
    """How to run one job; every field defaults to the job type's declaration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Priority | None = Field(None, description="`critical`, `default` or `low`.")
    delay_seconds: float | None = Field(
        None, ge=0, le=MAX_DELAY_SECONDS, description="Run no sooner than this many seconds."
    )
    run_at: Annotated[AwareDatetime | None, BeforeValidator(_rfc3339_text_only)] = Field(
        None, description="Run no sooner than this time (RFC 3339 with offset)."
    )
    max_tries: int | None = Field(None, ge=1, le=100, description="Attempts before `failed`.")
    timeout_seconds: float | None = Field(
        None, gt=0, le=7 * 24 * 3600, description="Stop an attempt that runs longer than this."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=20, description="Free-form tags, filterable in lists."
    )
    webhook_url: WebhookUrl | None = Field(
        None,
        description=(
            "Once the job is terminal, POST the final Job here (`http`/`https`, at most 2048"
            " characters), signed with the tenant's webhook secret: `X-Jobgate-Signature:"
            " sha256=<hex HMAC-SHA256 of the body>`. Headers `X-Jobgate-Event: job.<status>` and"
            " `X-Jobgate-Delivery: <id>` (the same on every retry) come with it. A 2xx answer"
            " delivers it; anything else is retried with exponential backoff; redirects are not"
            " followed. Only public addresses are called: a loopback, private, link-local or"
            " reserved IP address is refused (422 `webhook-url-refused`), and a host name"
            " resolving to one fails its delivery for good."
        ),
    )

    @model_validator(mode="after")
    def _one_start_time(self) -> Self:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        if self.run_at is None:
            return self
        latest = datetime.now(UTC) + timedelta(seconds=MAX_DELAY_SECONDS)
        if self.run_at > latest:
            raise ValueError(f"run_at may be at most {MAX_DELAY_SECONDS} seconds from now")
        return self

    def start_time(self, now: datetime) -> datetime | None:
        """When the job may start, if later than `now`."""
        if self.delay_seconds:
            return now + timedelta(seconds=self.delay_seconds)
        if self.run_at is not None and self.run_at > now:
            return self.run_at.astimezone(UTC)
        return None


def job_values(
    job_type: JobType[Any, Any], *, args: Contract, options: SubmitOptions, now: datetime
) -> dict[str, Any]:
    """A new job's column values but its tenant, the gaps filled from the job type's defaults."""
    start = options.start_time(now)
    return {
        "id": new_id(),
        "name": job_type.name,
        "queue": job_type.queue,
        "priority": options.priority or job_type.priority,
        "status": (JobStatus.SCHEDULED if start else JobStatus.QUEUED).value,
        "args": args.model_dump(mode="json"),
        "attempts": 0,
        "max_tries": options.max_tries or job_type.max_tries,
        "timeout_seconds": options.timeout_seconds or job_type.timeout_seconds,
        "labels": dict(options.labels),
        "webhook_url": None if options.webhook_url is None else str(options.webhook_url),
        "created_at": now,
        "scheduled_at": start,
        # Inside `submit_span`: the job's run continues this submit's trace (None: tracing off).
        "traceparent": current_traceparent(),
    }


def build_job(
    job_type: JobType[Any, Any],
    *,
    tenant_id: uuid.UUID,
    args: Contract,
    options: SubmitOptions,
    now: datetime,
) -> Job:
    """The row for a new job of this tenant (see `job_values`)."""
    return Job(tenant_id=tenant_id, **job_values(job_type, args=args, options=options, now=now))


def delivery_of(job: Job | ClaimedJob) -> Delivery:
    """What ARQ must be told about a stored job."""
    return delivery_of_row({key: getattr(job, key) for key in _DELIVERY_COLUMNS})


_DELIVERY_COLUMNS = ("id", "tenant_id", "name", "queue", "priority", "scheduled_at")


def delivery_of_row(row: Mapping[str, Any]) -> Delivery:
    """What ARQ must be told about a stored job, from its column values."""
    return Delivery(
        job_id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        queue=row["queue"],
        priority=cast(Priority, row["priority"]),
        run_at=row["scheduled_at"],
    )


@dataclass(frozen=True)
class Submitted:
    """A single submit's job, and whether it is new (False: an idempotent replay)."""

    job: Job
    is_new: bool


async def submit_once(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    job_type: JobType[Any, Any],
    args: Contract,
    options: SubmitOptions,
    idempotency_key: str | None,
) -> Submitted:
    """Submit one job; with an idempotency key, the same key and args return the first job.

    The unique index on (tenant, key) decides races: of two identical concurrent submits one
    inserts and the other finds its row.
    """
    if idempotency_key is None:
        (job,) = await submit_jobs(
            session, redis, tenant_id=tenant_id, job_type=job_type, requests=[(args, options)]
        )
        return Submitted(job=job, is_new=True)
    with submit_span(job_type.name):
        job = build_job(job_type, tenant_id=tenant_id, args=args, options=options, now=_now())
        job.idempotency_key = idempotency_key
        inserted = await insert_job_once(session, tenant_id=tenant_id, job=job)
        if inserted is None:
            existing = await find_by_idempotency_key(
                session, tenant_id=tenant_id, key=idempotency_key
            )
            await session.commit()  # nothing was written; commit, unlike rollback, keeps `existing`
            if existing is None:  # purged between the two statements: the key is free again
                raise IdempotencyConflict("The idempotency key was just released; submit again.")
            if existing.name != job.name:
                # Naming the other type leaks nothing: keys are per tenant (the unique index and
                # `find_by_idempotency_key` are both scoped to it), so `existing` is the caller's.
                raise IdempotencyConflict(
                    f"This idempotency key was already used for a job of another type"
                    f" ({existing.name!r}, not {job.name!r}); use a new key for this job."
                )
            if existing.args != job.args:
                raise IdempotencyConflict()
            return Submitted(job=existing, is_new=False)
        await commit_and_enqueue(session, redis, tenant_id=tenant_id, jobs=[inserted])
        return Submitted(job=inserted, is_new=True)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FusedSubmitted:
    """Jobs stored by `submit_fused` (each row's column values), and the caller's rate-limit
    state if it is limited."""

    rows: list[dict[str, Any]]
    rate: RateState | None


async def submit_fused(
    engine: AsyncEngine,
    redis: ArqRedis,
    settings: Settings,
    *,
    token: str,
    job_type: JobType[Any, Any],
    requests: Sequence[tuple[Contract, SubmitOptions]],
) -> FusedSubmitted:
    """Authenticate `token` and submit jobs: one PostgreSQL statement, one Redis script.

    The API's hot path (single and batch submits without an idempotency key). The same checks
    in the same order as a session-based submit (live key, secret, scope, rate limit, store,
    hand-off), fused into one statement where the tenant has no rate limit; a limited tenant's
    tokens are taken before its jobs are stored, as ever. All or nothing. No ORM objects: rows
    stay column values, which is what the answer and the hand-off need.
    """
    parsed = parse_token(token)
    if parsed is None:
        raise Unauthenticated(UNKNOWN_KEY)
    key_id, secret = parsed
    with submit_span(job_type.name, count=len(requests)):
        now = _now()
        rows = [
            job_values(job_type, args=args, options=options, now=now) for args, options in requests
        ]
        presented = await check_key_and_store(
            engine,
            key_id=key_id,
            secret_hash=hash_secret(secret),
            jobs=rows,
            tenant_may_be_unlimited=settings.rate_limit_per_second is None,
        )
        if presented is None or not secret_matches(secret, presented.secret_hash):
            raise Unauthenticated(UNKNOWN_KEY)
        check_scope(presented.scopes, Scope.SUBMIT)
        tenant_id, rate_state = presented.tenant_id, None
        if not presented.stored:  # the tenant is rate-limited: charge its bucket, then store
            rate = rate_limit_for(presented.limits, settings)
            if rate is not None:
                rate_state = await take_tokens(
                    redis, tenant_id=tenant_id, rate=rate, cost=len(rows)
                )
            await store_jobs(engine, tenant_id=tenant_id, jobs=rows)
        for row in rows:
            row["tenant_id"] = tenant_id
        try:
            await enqueue(redis, [delivery_of_row(row) for row in rows])
        except QueueUnavailable:
            async with engine.begin() as connection:
                job_ids = [row["id"] for row in rows]
                await discard_jobs(connection, tenant_id=tenant_id, job_ids=job_ids)
            raise
        return FusedSubmitted(rows=rows, rate=rate_state)


Undo = Callable[[AsyncSession], Awaitable[None]]
"""What a caller changed besides inserting jobs, taken back when their hand-off fails."""


async def commit_and_enqueue(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    jobs: Sequence[Job],
    undo: Undo | None = None,
) -> None:
    """Commit the new jobs, then hand them to ARQ; if that fails, undo and re-raise.

    The undo is one transaction: the jobs and the links to them (`store.discard_jobs`), then
    `undo` for the caller's own changes. If it cannot commit either (PostgreSQL gone too), the
    jobs stay, waiting, and the reconciler enqueues them: accepted work, never a half undo.
    """
    await session.commit()
    try:
        await enqueue(redis, [delivery_of(job) for job in jobs])
    except QueueUnavailable:
        await discard_jobs(session, tenant_id=tenant_id, job_ids=[job.id for job in jobs])
        if undo is not None:
            await undo(session)
        await session.commit()
        raise


async def submit_jobs(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    job_type: JobType[Any, Any],
    requests: Sequence[tuple[Contract, SubmitOptions]],
) -> list[Job]:
    """Store and enqueue jobs of one type, all or nothing."""
    with submit_span(job_type.name, count=len(requests)):
        now = _now()
        jobs = [
            build_job(job_type, tenant_id=tenant_id, args=args, options=options, now=now)
            for args, options in requests
        ]
        await insert_jobs(session, tenant_id=tenant_id, jobs=jobs)
        await commit_and_enqueue(session, redis, tenant_id=tenant_id, jobs=jobs)
        return jobs
