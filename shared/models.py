"""SQLAlchemy models: tenants, their API keys, and jobs (the source of truth for every job)."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.status import CLAIMABLE, WAITING, JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def new_webhook_secret() -> str:
    """A fresh webhook signing secret (256 random bits)."""
    return secrets.token_urlsafe(32)


RANDOM_HEX_SQL = "replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')"
"""The database's default for rows inserted without one (244 random bits, hex)."""


class Tenant(Base):
    """A customer of the gateway; every job and key belongs to exactly one."""

    __tablename__ = "tenant"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    webhook_secret: Mapped[str] = mapped_column(
        Text, default=new_webhook_secret, server_default=text(RANDOM_HEX_SQL)
    )
    """Signs the tenant's webhooks (HMAC-SHA256). Kept as is: signing needs the secret itself."""
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float)
    """Submits per second, sustained; null: the configured default (`shared.tenants.ratelimit`)."""
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    """Submits at once; null: the configured default."""
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    """Jobs running at once over all workers; null: the configured default (`worker.quota`)."""

    __table_args__ = (
        CheckConstraint(
            "rate_limit_per_second > 0 AND rate_limit_burst >= 1 AND max_concurrent_jobs >= 1",
            name="limits",
        ),
    )


class ApiKey(Base):
    """A tenant's credential. Only a SHA-256 of the secret is stored; the key is shown once."""

    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(Text)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (Index(None, "tenant_id"),)


_STATUSES = ", ".join(f"'{status.value}'" for status in JobStatus)
_WAITING = ", ".join(sorted(f"'{status.value}'" for status in WAITING))
_UNFINISHED = ", ".join(sorted(f"'{status.value}'" for status in CLAIMABLE))


class Job(Base):
    """One job: what was asked, where it is, and how it ended."""

    __tablename__ = "job"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    args: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_tries: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    retry_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    retried_by: Mapped[uuid.UUID | None] = mapped_column(UUID)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    scheduled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    start_by: Mapped[datetime | None] = mapped_column(Timestamp)
    """Its start deadline: not started by then, it ends `expired` (`shared.jobs.deadlines`)."""
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(Timestamp)
    """Set when a running job is asked to stop; the worker then records `cancelled`."""
    webhook_url: Mapped[str | None] = mapped_column(Text)
    """Called with the final job once it is terminal (see `WebhookDelivery`)."""
    traceparent: Mapped[str | None] = mapped_column(Text)
    """The W3C trace context the job was submitted under (set only while tracing is on)."""
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow.id", ondelete="SET NULL")
    )
    """The workflow this job is a step of (`shared.workflows.runs`); null for a plain job."""
    workflow_step: Mapped[str | None] = mapped_column(Text)
    """Which step: its JSON pointer in the workflow's definition (e.g. `/steps/1`)."""
    concurrency_key: Mapped[str | None] = mapped_column(Text)
    """The key its type's `ConcurrencyLimit` counts it under; null when it has none."""
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    """Why a running job was asked to stop, when jobgate asked (its `cancelled` error says it)."""

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        CheckConstraint("attempts >= 0 AND max_tries >= 1", name="tries"),
        # Newest-first listing per tenant, with and without a status filter (ids are UUIDv7).
        Index(None, "tenant_id", "id"),
        Index(None, "tenant_id", "status", "id"),
        Index(
            None,
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # What the reconciler and the retention purge scan: waiting jobs, and finished ones.
        Index("ix_job_waiting", "status", postgresql_where=text(f"status IN ({_WAITING})")),
        Index(None, "expires_at", postgresql_where=text("expires_at IS NOT NULL")),
        # What the deadline sweep scans: waiting jobs with a start deadline, soonest first.
        Index(
            "ix_job_start_by",
            "start_by",
            postgresql_where=text(f"start_by IS NOT NULL AND status IN ({_WAITING})"),
        ),
        # One current job per workflow step (a retried step's old job points at its re-run);
        # also how a workflow's steps are found.
        Index(
            "ix_job_workflow_step",
            "workflow_id",
            "workflow_step",
            unique=True,
            postgresql_where=text("workflow_id IS NOT NULL AND retried_by IS NULL"),
        ),
        # Deleting a job or a workflow sets these to null in the jobs that point at it: without
        # an index each deleted row scanned the whole table (the purge managed 9 rows a second
        # on a million jobs). Partial: most jobs are neither re-runs nor workflow steps.
        # (`ix_job_workflow_step` cannot serve: it leaves out the retried steps' old jobs.)
        Index(None, "retry_of", postgresql_where=text("retry_of IS NOT NULL")),
        Index(None, "workflow_id", postgresql_where=text("workflow_id IS NOT NULL")),
        # A submit under a cancelling concurrency strategy counts the unfinished jobs of its
        # key (`shared.jobs.concurrency_keys`); finished jobs and unkeyed ones stay out.
        Index(
            "ix_job_concurrency_key",
            "tenant_id",
            "name",
            "concurrency_key",
            "id",
            postgresql_where=text(f"concurrency_key IS NOT NULL AND status IN ({_UNFINISHED})"),
        ),
    )


ATTEMPT_OUTCOMES = (
    JobStatus.SUCCEEDED,
    JobStatus.RETRYING,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)
"""What an attempt's outcome moved its job to: the statuses a running job's worker records."""
_ATTEMPT_OUTCOMES = ", ".join(f"'{outcome.value}'" for outcome in ATTEMPT_OUTCOMES)


class JobAttempt(Base):
    """One finished attempt of a job: recorded by its worker with the outcome, in the same
    statement (`shared.jobs.attempt_sql`), and deleted with its job.

    An attempt cut short by jobgate's own PostgreSQL or Redis is handed back uncounted and
    leaves no row; one whose worker died leaves none either (`shared.jobs.attempts` shows it).
    """

    __tablename__ = "job_attempt"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    """The job's `attempts` when this attempt started (1 for the first)."""
    worker: Mapped[str] = mapped_column(Text)
    """The worker process that ran it, `host:pid`."""
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime] = mapped_column(Timestamp)
    """When its outcome was recorded (the job's own `finished_at`, for a final one)."""
    outcome: Mapped[str] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(f"outcome IN ({_ATTEMPT_OUTCOMES})", name="outcome"),
        CheckConstraint("number >= 1", name="number"),
    )


WEBHOOK_STATUSES = ("pending", "delivered", "failed")
_WEBHOOK_STATUSES = ", ".join(f"'{status}'" for status in WEBHOOK_STATUSES)


class WebhookDelivery(Base):
    """A webhook call owed for a finished job: recorded with the status change, sent by workers."""

    __tablename__ = "webhook_delivery"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, server_default=func.now())
    """When a worker may (re)try it; while one sends it, that worker's lease; null once settled."""
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint(f"status IN ({_WEBHOOK_STATUSES})", name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index(None, "job_id"),
        Index(None, "tenant_id"),  # deleting a tenant cascades here
        # What the sender polls: pending deliveries by due time.
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )


WorkflowStatus = Literal["running", "succeeded", "failed", "cancelled"]
WORKFLOW_STATUSES: tuple[str, ...] = get_args(WorkflowStatus)
_WORKFLOW_STATUSES = ", ".join(f"'{status}'" for status in WORKFLOW_STATUSES)


class Workflow(Base):
    """A tree of steps (chain, group, chord) whose steps run as ordinary jobs.

    The definition is stored as submitted; a step becomes a `Job` (with `workflow_id` and
    `workflow_step`) when the steps it waits on have finished (see `shared.workflows.runs`).
    """

    __tablename__ = "workflow"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[Any] = mapped_column(JSONB, nullable=True)
    """The root node's output once the workflow succeeded."""
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint(f"status IN ({_WORKFLOW_STATUSES})", name="status"),
        Index(None, "tenant_id", "id"),
        # What the reconciler re-drives: running workflows whose advance may have been lost.
        Index("ix_workflow_running", "id", postgresql_where=text("status = 'running'")),
    )


class QueuePause(Base):
    """A paused queue: workers start none of its jobs while this row exists.

    Written by `shared.jobs.queue_pauses`.

    Submits to it are still accepted; its jobs wait in line. Redis holds a mirror that the
    workers' take script reads; this table is the truth the mirror is rebuilt from.
    """

    __tablename__ = "queue_pause"

    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    paused_by: Mapped[str] = mapped_column(Text)
    """Who paused it: `api`, `cli` or `dashboard`."""
    reason: Mapped[str | None] = mapped_column(Text)
