"""Concurrency keys at submit: the key each job counts under, and the cancelling strategies.

A job of a type with a `ConcurrencyLimit` takes its key from its args (the declared path) or
from `options.concurrency_key`; that option on a type without a limit is refused (422). The
key is stored on the row and carried in the job's payload, so workers hold at most `limit` of
a key's jobs running at once (`worker.key_limits`) without reading the row first.

`queue` costs the submit nothing more: the workers make the others wait. The cancelling
strategies decide when jobs are created, in the transaction that stores them, under a
transaction-scoped advisory lock per key, so concurrent submits of one key see each other:

- `cancel_newest`: a new job that finds `limit` unfinished jobs of its key (waiting or
  running, not already being cancelled) is cancelled at once, with a reason saying so;
- `cancel_in_progress`: the new job cancels the oldest of them, as many as it takes to keep
  `limit` (itself included): latest wins. Waiting ones are cancelled at once, running ones
  are aborted, as `POST /jobs/{id}/cancel` would (`shared.jobs.cancel`).

Either way a key's jobs still start one slot at a time in the workers, so a newer job waits
for the slot of the job it superseded to free while that one stops.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.arg_paths import value_at
from shared.contracts import REGISTRY, ConcurrencyLimit, JobType
from shared.errors import OptionRefused
from shared.jobs.cancel import Cancelled, stop_job
from shared.jobs.retention import expires_at
from shared.models import Job
from shared.settings import Settings
from shared.status import CLAIMABLE, JobStatus

MAX_KEY_LENGTH = 200
"""Longer keys read from args are stored as their SHA-256 (`sha256:<hex>`): a key is an index
entry and a Redis key name, not a place for a document."""
CANCELLING = frozenset({"cancel_in_progress", "cancel_newest"})
_UNFINISHED = [status.value for status in CLAIMABLE]


def key_option_problem(job_type: JobType[Any, Any], key: str | None) -> str | None:
    """Why `options.concurrency_key` is refused for this type (None: it is not)."""
    if key is None or job_type.concurrency is not None:
        return None
    return f"job type {job_type.name!r} declares no concurrency limit, so it takes no key"


def refuse_key_options(
    job_type: JobType[Any, Any], keys: Iterable[tuple[Sequence[str | int], str | None]]
) -> None:
    """Raise `OptionRefused` naming each `(loc, concurrency_key)` this type does not take."""
    issues: list[dict[str, object]] = []
    for loc, key in keys:
        problem = key_option_problem(job_type, key)
        if problem is not None:
            issues.append({"loc": list(loc), "msg": problem, "type": "option_refused"})
    if issues:
        raise OptionRefused(f"The concurrency_key is refused: {issues[0]['msg']}.", issues=issues)


def concurrency_key_of(
    job_type: JobType[Any, Any], args: Mapping[str, Any], option: str | None
) -> str | None:
    """The key a new job counts under: the submit's own, else its args' (None: not limited)."""
    refuse_key_options(job_type, [(("options", "concurrency_key"), option)])
    limit = job_type.concurrency
    if limit is None:
        return None
    key = option if option is not None else value_at(args, limit.key)
    if key is None or len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def cancelling_limit(row: Mapping[str, Any]) -> ConcurrencyLimit | None:
    """The limit of a new job (column values) whose strategy is decided at submit, if any."""
    if row["concurrency_key"] is None:
        return None
    limit = REGISTRY.get(row["name"]).concurrency
    return limit if limit is not None and limit.strategy in CANCELLING else None


def needs_key_locks(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether storing these jobs must go through `lock_keys` and `settle_keys`."""
    return any(cancelling_limit(row) is not None for row in rows)


async def lock_keys(
    session: AsyncSession, *, tenant_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Before the jobs are stored: hold each cancelling key of theirs until the commit.

    In one order for every submit (sorted), so two submits never wait on each other crosswise.
    """
    scopes = sorted(
        {(row["name"], row["concurrency_key"]) for row in rows if cancelling_limit(row)}
    )
    for name, key in scopes:
        lock = func.hashtextextended(f"jobgate concurrency key {tenant_id}:{name}:{key}", 0)
        await session.execute(select(func.pg_advisory_xact_lock(lock)))


@dataclass
class _Key:
    """One key's unfinished jobs (oldest first, those being cancelled left out), as the new jobs
    are settled one by one."""

    limit: ConcurrencyLimit
    live: list[uuid.UUID]


async def settle_keys(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    rows: Sequence[dict[str, Any]],
    settings: Settings,
) -> list[Cancelled]:
    """After the jobs are stored (their keys locked): apply the cancelling strategies.

    Returns every job cancelled, for `tell_workers` once committed. A new job cancelled here
    has its row (`rows`) updated to match, so the caller neither enqueues it nor shows it as
    waiting.
    """
    keys: dict[tuple[str, str], _Key] = {}
    cancelled: list[Cancelled] = []
    new_ids = {row["id"] for row in rows}
    for row in rows:
        limit = cancelling_limit(row)
        if limit is None:
            continue
        scope = (row["name"], row["concurrency_key"])
        if scope not in keys:
            keys[scope], unheard = await _key(session, tenant_id, scope, limit, new_ids)
            cancelled += unheard
        key = keys[scope]
        if limit.strategy == "cancel_newest" and len(key.live) >= limit.limit:
            cancelled.append(await _cancel_newcomer(session, tenant_id, row, key, settings))
            continue
        key.live.append(row["id"])
        while len(key.live) > limit.limit:  # cancel_in_progress: the oldest make room
            outcome = await _supersede(session, tenant_id, key.live.pop(0), row, settings)
            if outcome is not None:
                cancelled.append(outcome)
                _update_if_new(rows, outcome)
    return cancelled


async def _key(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    scope: tuple[str, str],
    limit: ConcurrencyLimit,
    new_ids: set[uuid.UUID],
) -> tuple[_Key, list[Cancelled]]:
    """A key as stored before these jobs, and its running jobs to ask to stop again.

    Those were asked to stop, but their worker may never have heard (Redis refused the abort
    after the commit): asking again is harmless, an abort asked twice is one abort.
    """
    older = [job for job in await _unfinished(session, tenant_id, *scope) if job.id not in new_ids]
    live = [job.id for job in older if job.cancel_requested_at is None]
    unheard = [
        Cancelled(job=job, is_done=False)
        for job in older
        if job.cancel_requested_at is not None and job.status == JobStatus.RUNNING
    ]
    return _Key(limit, live), unheard


async def _unfinished(
    session: AsyncSession, tenant_id: uuid.UUID, name: str, key: str
) -> list[Job]:
    """The key's waiting and running jobs, oldest first."""
    result = await session.execute(
        select(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.name == name,
            Job.concurrency_key == key,
            Job.status.in_(_UNFINISHED),
        )
        .order_by(Job.id)
    )
    return list(result.scalars())


async def _cancel_newcomer(
    session: AsyncSession, tenant_id: uuid.UUID, row: dict[str, Any], key: _Key, settings: Settings
) -> Cancelled:
    limit = key.limit
    reason = (
        f"cancelled at submit: concurrency key {row['concurrency_key']!r} already has"
        f" {len(key.live)} unfinished job(s), its limit is {limit.limit} (cancel_newest)"
    )
    outcome = await stop_job(
        session,
        tenant_id=tenant_id,
        job_id=row["id"],
        expires_at=expires_at(REGISTRY.get(row["name"]), settings),
        reason=reason,
    )
    if outcome is None:  # stored a moment ago in this transaction: it is waiting
        raise RuntimeError(f"job {row['id']} was not waiting when its key was settled")
    _update_row(row, outcome)
    return outcome


async def _supersede(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    newer: Mapping[str, Any],
    settings: Settings,
) -> Cancelled | None:
    reason = (
        f"superseded by job {newer['id']} with the same concurrency key"
        f" {newer['concurrency_key']!r} (cancel_in_progress)"
    )
    return await stop_job(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        expires_at=expires_at(REGISTRY.get(newer["name"]), settings),
        reason=reason,
    )


def _update_if_new(rows: Sequence[dict[str, Any]], outcome: Cancelled) -> None:
    """A job of this very batch superseded by a later one of it: its row says so too."""
    for row in rows:
        if row["id"] == outcome.job.id:
            _update_row(row, outcome)


def _update_row(row: dict[str, Any], outcome: Cancelled) -> None:
    job = outcome.job
    row.update(
        status=JobStatus.CANCELLED.value,
        error=job.error,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
    )
