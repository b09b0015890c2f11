"""Creating jobs: every job comes into being through `create_jobs`, and only there.

A single submit, a batch, an idempotent submit, a re-run, a dead-letter retry, a workflow's
steps and a cron tick all call `create_jobs` with a target saying where the rows are written:

- `WithKey`: the API's hot path. The key check and the insert are one raw asyncpg statement
  (`submit_sql.check_key_and_store`), so a submit is one PostgreSQL and one Redis round trip.
- `InSession`: the jobs join the session's transaction, beside the caller's own changes (a
  workflow, a re-run's link); with an `idempotency_key`, the insert is `ON CONFLICT DO NOTHING`
  and a used key replays the first job.

Jobs of a type with a cancelling concurrency strategy are stored in a transaction that holds
their keys' locks and cancels what the strategy says (`concurrency_keys`), on either path; the
jobs it cancelled hear of it from Redis after the commit, before the new jobs are handed over.
A refused hand-off then undoes the new jobs, not those cancellations (as a cancel that Redis
refused is not undone either); the next submit of the key asks an unheard abort again.

Order matters. Rows are committed before Redis is touched, so a worker never picks up a job
whose row it cannot see. If the hand-off fails, the creation is undone in one transaction (the
rows deleted, with everything that points at them: `submit_sql.discard_jobs`, plus what the
caller changed, e.g. a workflow's status) and the caller gets `QueueUnavailable`: a submit or
re-run either returns jobs that will run or leaves no trace. Jobs released by a workflow's
advance were accepted already (`InSession.accepted`): their refused hand-off is left to the
reconciler, which re-enqueues waiting rows, as it does after a crash between commit and
hand-off.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

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
    ValidationInfo,
    model_validator,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.contracts import Contract, JobType, Priority
from shared.db import create_sessionmaker
from shared.delays import MAX_DELAY_SECONDS
from shared.errors import IdempotencyConflict, QueueUnavailable, Unauthenticated
from shared.ids import new_id
from shared.jobs.cancel import Cancelled, tell_workers
from shared.jobs.concurrency_keys import (
    MAX_KEY_LENGTH,
    concurrency_key_of,
    lock_keys,
    needs_key_locks,
    settle_keys,
)
from shared.jobs.enqueue import enqueue
from shared.jobs.rows import delivery_of
from shared.jobs.store import find_by_idempotency_key
from shared.jobs.submit_sql import (
    check_key_and_store,
    discard_jobs,
    insert_job_once,
    insert_jobs,
    store_jobs,
)
from shared.models import Job
from shared.settings import Settings
from shared.status import JobStatus
from shared.tenants.apikeys import Scope, hash_secret, parse_token, secret_matches
from shared.tenants.ratelimit import RateState, rate_limit_for, take_tokens
from shared.tenants.tenancy import UNKNOWN_KEY, check_scope
from shared.tracing import current_traceparent, submit_span

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


READ_BACK = "read_back"
"""Validation context key: options accepted earlier and read back from storage (a workflow's
steps), whose checks against the clock (`start_by` in the future) are not made again."""


class SubmitOptions(BaseModel):
    """How to run one job; every field defaults to the job type's declaration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Priority | None = Field(None, description="`critical`, `default` or `low`.")
    # Numbers are strict: lax pydantic reads `true` as 1 and `"30"` as 30, which the schema
    # (a JSON number) does not allow; an integer is still a valid float.
    delay_seconds: float | None = Field(
        None,
        ge=0,
        le=MAX_DELAY_SECONDS,
        strict=True,
        description="Run no sooner than this many seconds.",
    )
    run_at: Annotated[AwareDatetime | None, BeforeValidator(_rfc3339_text_only)] = Field(
        None, description="Run no sooner than this time (RFC 3339 with offset)."
    )
    start_by: Annotated[AwareDatetime | None, BeforeValidator(_rfc3339_text_only)] = Field(
        None,
        description=(
            "Start deadline (RFC 3339 with offset, in the future, after `run_at` or the delay):"
            " a job not started by then, first try or retry, ends `expired` without running."
        ),
    )
    start_within_seconds: float | None = Field(
        None,
        gt=0,
        le=MAX_DELAY_SECONDS,
        strict=True,
        description=(
            "Start deadline as seconds from when the job may start (now, or its delay or"
            " `run_at`); not with `start_by`. Default: the job type's `start_within_seconds`."
        ),
    )
    max_tries: int | None = Field(
        None, ge=1, le=100, strict=True, description="Attempts before `failed`."
    )
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        strict=True,
        description="Stop an attempt that runs longer than this.",
    )
    queue: str | None = Field(
        None,
        max_length=200,
        description="One of the queues the job type may run on (`GET /job-types`: `queues`);"
        " default: its `queue`. Any other is refused (422 `queue-not-allowed`).",
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=20, description="Free-form tags, filterable in lists."
    )
    concurrency_key: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[^\x00]*$",
        description=(
            "The key the job type's concurrency limit counts this job under, instead of the one"
            " its args give (`GET /job-types` shows each type's `concurrency`); a type without"
            " one refuses it (422 `option-refused`). Keys are the tenant's own."
        ),
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

    @model_validator(mode="after")
    def _one_start_deadline(self, info: ValidationInfo) -> Self:
        if self.start_by is None:
            return self
        if self.start_within_seconds is not None:
            raise ValueError("give start_by or start_within_seconds, not both")
        if info.context is not None and info.context.get(READ_BACK):
            return self  # checked against the clock when it was accepted
        now = datetime.now(UTC)
        if self.start_by <= now:
            raise ValueError("start_by is in the past: the job could never start")
        start = self.start_time(now)
        if start is not None and self.start_by <= start:
            raise ValueError("start_by must come after run_at or the delay")
        return self

    def start_time(self, now: datetime) -> datetime | None:
        """When the job may start, if later than `now`."""
        if self.delay_seconds:
            return now + timedelta(seconds=self.delay_seconds)
        if self.run_at is not None and self.run_at > now:
            return self.run_at.astimezone(UTC)
        return None

    def start_deadline(self, job_type: JobType[Any, Any], start: datetime) -> datetime | None:
        """When the job, which may start at `start`, must have started, if it has a deadline."""
        if self.start_by is not None:
            return self.start_by.astimezone(UTC)
        within = self.start_within_seconds or job_type.start_within_seconds
        return None if within is None else start + timedelta(seconds=within)


def job_values(
    job_type: JobType[Any, Any], *, args: Contract, options: SubmitOptions, now: datetime
) -> dict[str, Any]:
    """A new job's column values but its tenant, the gaps filled from the job type's defaults."""
    start = options.start_time(now)
    args_json = args.model_dump(mode="json")
    return {
        "id": new_id(),
        "name": job_type.name,
        "queue": job_type.queue_for(options.queue),
        "priority": options.priority or job_type.priority,
        "status": (JobStatus.SCHEDULED if start else JobStatus.QUEUED).value,
        "args": args_json,
        "attempts": 0,
        "max_tries": options.max_tries or job_type.max_tries,
        "timeout_seconds": options.timeout_seconds or job_type.timeout_seconds,
        "labels": dict(options.labels),
        "webhook_url": None if options.webhook_url is None else str(options.webhook_url),
        "created_at": now,
        "scheduled_at": start,
        "start_by": options.start_deadline(job_type, start or now),
        # Inside `submit_span`: the job's run continues this submit's trace (None: tracing off).
        "traceparent": current_traceparent(),
        "concurrency_key": concurrency_key_of(job_type, args_json, options.concurrency_key),
    }


Row = dict[str, Any]
"""A job's column values, as `job_values` builds them (plus `tenant_id` once stored)."""


@dataclass(frozen=True)
class Submission:
    """Jobs of one type as a client asks for them: built into rows inside the submit's span,
    so each job's run continues the submit's trace."""

    job_type: JobType[Any, Any]
    requests: Sequence[tuple[Contract, SubmitOptions]]


@dataclass(frozen=True)
class WithKey:
    """Authenticate an API key (`token`) and store its tenant's jobs in the same statement."""

    engine: AsyncEngine
    settings: Settings
    token: str


Undo = Callable[[AsyncSession], Awaitable[None]]
"""What a caller changed besides inserting jobs, taken back when their hand-off fails."""


@dataclass(frozen=True)
class InSession:
    """Store a tenant's jobs in the session's transaction, then commit it.

    `settings`: the deployment's, for the retention of jobs a concurrency strategy cancels
    as they are created. `idempotency_key`: one job, stored only if the tenant has not used
    the key (the unique index on (tenant, key) decides races), else the first job is
    replayed. `undo`: the caller's other changes, taken back with the jobs if the hand-off is
    refused. `accepted`: the jobs stay even if the hand-off is refused (the reconciler
    enqueues them).
    """

    session: AsyncSession
    tenant_id: uuid.UUID
    settings: Settings = field(kw_only=True)
    idempotency_key: str | None = None
    undo: Undo | None = None
    accepted: bool = False


@dataclass(frozen=True)
class Created:
    """What `create_jobs` stored: the new jobs' rows; the tenant's rate-limit state if a
    `WithKey` submit charged it; for an idempotent replay, no rows and the first job; the jobs
    a concurrency strategy cancelled (new ones among them keep their rows, as `cancelled`)."""

    rows: list[Row]
    rate: RateState | None = None
    replayed: Job | None = None
    cancelled: list[Cancelled] = field(default_factory=list)

    @property
    def is_new(self) -> bool:
        return self.replayed is None


async def create_jobs(
    redis: ArqRedis, target: WithKey | InSession, jobs: Submission | Sequence[Row]
) -> Created:
    """Store jobs, commit, and hand them to ARQ; if Redis refuses them, undo and re-raise.

    `jobs`: a client's `Submission`, or rows built by the caller (`job_values`, with a
    `tenant_id` for `InSession`). All or nothing.
    """
    if not isinstance(jobs, Submission):
        return await _create(redis, target, list(jobs))
    with submit_span(jobs.job_type.name, count=len(jobs.requests)):
        now = datetime.now(UTC)
        rows = [
            job_values(jobs.job_type, args=args, options=options, now=now)
            for args, options in jobs.requests
        ]
        if isinstance(target, InSession):
            for row in rows:
                row["tenant_id"] = target.tenant_id
        return await _create(redis, target, rows)


async def _create(redis: ArqRedis, target: WithKey | InSession, rows: list[Row]) -> Created:
    if isinstance(target, WithKey):
        created = await _store_with_key(redis, target, rows)
    else:
        created = await _store_in_session(target, rows)
    if not created.rows:
        return created
    waiting = [row for row in created.rows if row["status"] != JobStatus.CANCELLED]
    try:
        await tell_workers(redis, created.cancelled)
        await enqueue(redis, [delivery_of(row) for row in waiting])
    except QueueUnavailable:
        if isinstance(target, InSession) and target.accepted:
            return created
        await _undo(target, created.rows)
        raise
    return created


async def _undo(target: WithKey | InSession, rows: list[Row]) -> None:
    """Take the creation back in one transaction. If that cannot commit either (PostgreSQL
    gone too), the jobs stay, waiting, and the reconciler enqueues them: accepted work, never
    a half undo."""
    tenant_id, job_ids = rows[0]["tenant_id"], [row["id"] for row in rows]
    if isinstance(target, WithKey):
        async with target.engine.begin() as connection:
            await discard_jobs(connection, tenant_id=tenant_id, job_ids=job_ids)
        return
    await discard_jobs(target.session, tenant_id=tenant_id, job_ids=job_ids)
    if target.undo is not None:
        await target.undo(target.session)
    await target.session.commit()


async def _store_with_key(redis: ArqRedis, target: WithKey, rows: list[Row]) -> Created:
    """The same checks in the same order as a session's submit (live key, secret, scope, rate
    limit, store), fused into one statement where the tenant has no rate limit; a limited
    tenant's tokens are taken before its jobs are stored."""
    parsed = parse_token(target.token)
    if parsed is None:
        raise Unauthenticated(UNKNOWN_KEY)
    key_id, secret = parsed
    locking = needs_key_locks(rows)
    presented = await check_key_and_store(
        target.engine,
        key_id=key_id,
        secret_hash=hash_secret(secret),
        jobs=rows,
        may_store=target.settings.rate_limit_per_second is None and not locking,
    )
    if presented is None or not secret_matches(secret, presented.secret_hash):
        raise Unauthenticated(UNKNOWN_KEY)
    check_scope(presented.scopes, Scope.SUBMIT)
    tenant_id, rate_state = presented.tenant_id, None
    if not presented.stored:  # rate-limited, or keys to lock: charge the bucket, then store
        rate = rate_limit_for(presented.limits, target.settings)
        if rate is not None:
            rate_state = await take_tokens(redis, tenant_id=tenant_id, rate=rate, cost=len(rows))
        if locking:  # a cancelling concurrency strategy decides in the storing transaction
            _own(rows, tenant_id)
            async with create_sessionmaker(target.engine)() as session:
                stored = InSession(session, tenant_id, settings=target.settings)
                return replace(await _store_in_session(stored, rows), rate=rate_state)
        await store_jobs(target.engine, tenant_id=tenant_id, jobs=rows)
    _own(rows, tenant_id)
    return Created(rows=rows, rate=rate_state)


def _own(rows: list[Row], tenant_id: uuid.UUID) -> None:
    # Not before a raw insert: its statement names the tenant once, not per row.
    for row in rows:
        row["tenant_id"] = tenant_id


async def _store_in_session(target: InSession, rows: list[Row]) -> Created:
    session, tenant_id, key = target.session, target.tenant_id, target.idempotency_key
    locking = needs_key_locks(rows)
    if locking:
        await lock_keys(session, tenant_id=tenant_id, rows=rows)
    if key is None:
        await insert_jobs(session, tenant_id=tenant_id, jobs=rows)
    else:
        (row,) = rows
        row["idempotency_key"] = key
        if not await insert_job_once(session, tenant_id=tenant_id, job=row):
            return await _replay(session, row, key)
    cancelled = []
    if locking:
        cancelled = await settle_keys(
            session, tenant_id=tenant_id, rows=rows, settings=target.settings
        )
    await session.commit()
    return Created(rows=rows, cancelled=cancelled)


async def _replay(session: AsyncSession, row: Row, key: str) -> Created:
    """The first job of an idempotency key the tenant used already (nothing was stored)."""
    tenant_id = row["tenant_id"]
    existing = await find_by_idempotency_key(session, tenant_id=tenant_id, key=key)
    await session.commit()  # nothing was written; commit, unlike rollback, keeps `existing`
    if existing is None:  # purged between the two statements: the key is free again
        raise IdempotencyConflict("The idempotency key was just released; submit again.")
    if existing.name != row["name"]:
        # Naming the other type leaks nothing: keys are per tenant (the unique index and
        # `find_by_idempotency_key` are both scoped to it), so `existing` is the caller's.
        raise IdempotencyConflict(
            f"This idempotency key was already used for a job of another type"
            f" ({existing.name!r}, not {row['name']!r}); use a new key for this job."
        )
    if existing.args != row["args"]:
        raise IdempotencyConflict()
    return Created(rows=[], replayed=existing)
