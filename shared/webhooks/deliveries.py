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
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    host: str
    """The receiver's host and port (as in the URL), as the per-host cap counts it."""


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
    """`record_deliveries` inside a status change's own statement (see `status_changes`).

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


# The receiver of a stored `webhook_url`, as the per-host cap counts it: its host (lower case,
# IPv6 in brackets) and port if given, without user info. Stored URLs passed `AnyUrl` at
# submit, so they have a scheme and a host.
_HOST_PATTERN = r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#]*@)?((?:\[[^]]*\]|[^:/?#]*)(?::[0-9]*)?)"
_HOST = func.lower(func.coalesce(func.substring(WebhookDelivery.url, _HOST_PATTERN), ""))
_CANDIDATES_PER_SLOT = 4
"""Due rows read per free slot, so that rows skipped for a busy host leave others to take."""


@dataclass(frozen=True)
class Capacity:
    """What one sender can take on now: its free slots, and how many each tenant and host holds.

    A tenant or host never gets more than its cap counting what it holds already.
    """

    slots: int
    per_tenant: int
    per_host: int
    tenants: Mapping[uuid.UUID, int] = field(default_factory=dict)
    hosts: Mapping[str, int] = field(default_factory=dict)

    def full_tenants(self) -> list[uuid.UUID]:
        return [tenant for tenant, held in self.tenants.items() if held >= self.per_tenant]

    def full_hosts(self) -> list[str]:
        return [host for host, held in self.hosts.items() if held >= self.per_host]

    def pick(self, candidates: Iterable[tuple[uuid.UUID, uuid.UUID, str]]) -> list[uuid.UUID]:
        """The ids of `(id, tenant, host)` candidates, in order, that fit every cap."""
        tenants, hosts = Counter(self.tenants), Counter(self.hosts)
        picked: list[uuid.UUID] = []
        for delivery_id, tenant, host in candidates:
            if len(picked) == self.slots:
                break
            if tenants[tenant] < self.per_tenant and hosts[host] < self.per_host:
                picked.append(delivery_id)
                tenants[tenant] += 1
                hosts[host] += 1
        return picked


async def claim_due(
    session: AsyncSession, *, capacity: Capacity, lease_seconds: float
) -> list[Outgoing]:
    """Lease due deliveries to this sender, fairly across tenants (the caller commits).

    Candidates are read round-robin: every tenant's longest-due delivery first, then every
    tenant's second ... so one tenant's backlog never stands before another tenant's delivery.
    Tenants and hosts at their cap are left out; the rows picked are then locked (`SKIP
    LOCKED`: another sender's claim in between wins) and leased.
    """
    if capacity.slots <= 0:
        return []
    tenant_rank = func.row_number().over(
        partition_by=WebhookDelivery.tenant_id,
        order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id),
    )
    due = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.tenant_id,
            _HOST.label("host"),
            WebhookDelivery.next_attempt_at,
            tenant_rank.label("tenant_rank"),
        )
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= func.now(),
            WebhookDelivery.tenant_id.not_in(capacity.full_tenants()),
            _HOST.not_in(capacity.full_hosts()),
        )
        .subquery()
    )
    candidates = await session.execute(
        select(due.c.id, due.c.tenant_id, due.c.host)
        .where(due.c.tenant_rank <= capacity.per_tenant)
        .order_by(due.c.tenant_rank, due.c.next_attempt_at, due.c.id)
        .limit(capacity.slots * _CANDIDATES_PER_SLOT)
    )
    picked = capacity.pick((row.id, row.tenant_id, row.host) for row in candidates)
    if not picked:
        return []
    # A window function cannot be locked FOR UPDATE, hence the second statement; the status and
    # due time are checked again under the lock, as another sender may have leased a row since.
    lockable = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.id.in_(picked),
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= func.now(),
        )
        .with_for_update(skip_locked=True)
    )
    leased = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(lockable.scalar_subquery()))
        .values(next_attempt_at=func.now() + timedelta(seconds=lease_seconds))
        .returning(WebhookDelivery, _HOST)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    claimed: list[tuple[WebhookDelivery, str]] = [(delivery, host) for delivery, host in leased]
    if not claimed:
        return []
    order = {delivery_id: n for n, delivery_id in enumerate(picked)}
    claimed.sort(key=lambda row: order[row[0].id])
    return await _outgoing(session, claimed)


async def _outgoing(
    session: AsyncSession, claimed: Sequence[tuple[WebhookDelivery, str]]
) -> list[Outgoing]:
    """What sending each claimed delivery needs: its job, the job's deliveries, the secret."""
    job_ids = [delivery.job_id for delivery, _ in claimed]
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
            host=host,
        )
        for delivery, host in claimed
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
