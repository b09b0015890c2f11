"""Webhook deliveries: recorded with a job's terminal status change, claimed and sent by workers.

A delivery row is written in the transaction that makes its job terminal (see `store`), so a
job never finishes without the call it owes. Workers claim due rows with `FOR UPDATE SKIP
LOCKED` and push `next_attempt_at` past the attempt (a lease) before sending, outside any
transaction: two workers never send one delivery at once, and a worker that dies mid-send
leaves a row that is due again when its lease ends (at-least-once; receivers dedupe on
`X-Jobgate-Delivery`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import CTE, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from shared.ids import new_id
from shared.models import Job, Tenant, WebhookDelivery
from shared.settings import WebhookSettings

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery with what sending it needs: the job, its deliveries, the secret."""

    delivery: WebhookDelivery
    job: Job
    deliveries: list[WebhookDelivery]
    secret: str


def backoff_seconds(attempts: int, settings: WebhookSettings) -> float:
    """Wait after `attempts` failed attempts: base · 2^(attempts-1), capped."""
    exponent = min(max(attempts - 1, 0), 32)
    return float(min(settings.backoff_base_seconds * 2**exponent, settings.backoff_max_seconds))


async def record_deliveries(
    session: AsyncSession, *, tenant_id: uuid.UUID, jobs: Sequence[Job]
) -> None:
    """Owe a webhook call for each of these (now terminal) jobs that has a `webhook_url`."""
    if any(job.tenant_id != tenant_id for job in jobs):
        raise ValueError("job belongs to another tenant")
    rows = [
        {"id": new_id(), "tenant_id": tenant_id, "job_id": job.id, "url": job.webhook_url}
        for job in jobs
        if job.webhook_url is not None
    ]
    if rows:  # status and next_attempt_at default to pending, due now
        await session.execute(insert(WebhookDelivery), rows)


def deliveries_of_moved(moved: CTE) -> CTE:
    """`record_deliveries` inside a status change's own statement (see `store._transition`).

    `moved` is the CTE of one job's `UPDATE ... RETURNING`: the delivery row (its id bound as
    `delivery_id`) is inserted only if that update moved the job and it has a `webhook_url`.
    """
    owed = select(
        bindparam("delivery_id", type_=UUID()), moved.c.tenant_id, moved.c.id, moved.c.webhook_url
    ).where(moved.c.webhook_url.is_not(None))
    return (
        insert(WebhookDelivery)
        .from_select(["id", "tenant_id", "job_id", "url"], owed)
        .cte("owed_delivery")
    )


async def deliveries_by_job(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookDelivery]]:
    """The tenant's deliveries of these jobs, oldest first, keyed by job id (one query)."""
    if not job_ids:
        return {}
    result = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.job_id.in_(job_ids))
        .order_by(WebhookDelivery.id)
        .execution_options(populate_existing=True)
    )
    grouped: defaultdict[uuid.UUID, list[WebhookDelivery]] = defaultdict(list)
    for delivery in result.scalars():
        grouped[delivery.job_id].append(delivery)
    return dict(grouped)


async def claim_due(session: AsyncSession, *, limit: int, lease_seconds: float) -> list[Outgoing]:
    """Lease up to `limit` due deliveries, of any tenant, to this worker (the caller commits)."""
    due = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= func.now())
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = list(
        (
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=func.now() + timedelta(seconds=lease_seconds))
                .returning(WebhookDelivery)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        ).scalars()
    )
    if not claimed:
        return []
    job_ids = [delivery.job_id for delivery in claimed]
    jobs = {
        job.id: (job, secret)
        for job, secret in await session.execute(
            select(Job, Tenant.webhook_secret)
            .join(Tenant, Tenant.id == Job.tenant_id)
            .where(Job.id.in_(job_ids))
            .execution_options(populate_existing=True)
        )
    }
    siblings: defaultdict[uuid.UUID, list[WebhookDelivery]] = defaultdict(list)
    for sibling in (
        await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id.in_(job_ids))
            .order_by(WebhookDelivery.id)
        )
    ).scalars():
        siblings[sibling.job_id].append(sibling)
    return [
        Outgoing(
            delivery=delivery,
            job=jobs[delivery.job_id][0],
            deliveries=siblings[delivery.job_id],
            secret=jobs[delivery.job_id][1],
        )
        for delivery in claimed
        if delivery.job_id in jobs  # the row is locked by the claim, so its job exists
    ]


async def record_attempt(
    session: AsyncSession,
    *,
    delivery: WebhookDelivery,
    status_code: int | None,
    error: str | None,
    settings: WebhookSettings,
    is_final: bool = False,
) -> str:
    """Record one attempt's outcome: delivered on 2xx, else due again later or `failed`.

    `is_final`: retrying cannot help (a refused destination), so a failure is `failed` at once.
    """
    attempts = delivery.attempts + 1
    values: dict[str, object] = {"attempts": attempts, "last_status_code": status_code}
    if status_code is not None and 200 <= status_code < 300:
        status = DELIVERED
        values |= {"last_error": None, "delivered_at": func.now(), "next_attempt_at": None}
    elif is_final or attempts >= settings.max_attempts:
        status = FAILED
        values |= {"last_error": _clip(error), "next_attempt_at": None}
    else:
        status = PENDING
        retry_in = timedelta(seconds=backoff_seconds(attempts, settings))
        values |= {"last_error": _clip(error), "next_attempt_at": func.now() + retry_in}
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == PENDING)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    return status


def _clip(error: str | None) -> str | None:
    return None if error is None else error[:_MAX_ERROR_CHARS]
