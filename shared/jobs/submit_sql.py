"""Every statement that creates jobs, or takes a creation back.

`check_key_and_store` and `store_jobs` run straight on asyncpg (`raw_sql`): they are the API's
hot path. One autocommitted statement looks the key up and, only if the key is live, its
secret's hash matches, it holds the submit scope and its tenant is not rate-limited, inserts
the jobs (all or nothing). The statement returns the key's row either way, so the caller can
tell 401 from 403 from "take rate-limit tokens first, then `store_jobs`". Comparing hashes in
SQL leaks nothing through timing (an attacker cannot steer SHA-256 outputs); the caller still
checks the secret in constant time before trusting the answer.

`insert_jobs`, `insert_job_once` and `discard_jobs` are SQLAlchemy Core, run in a session's
transaction beside the caller's other changes (a workflow, a re-run's link). Every statement
names the tenant. Only `shared.jobs.submit.create_jobs` calls these.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, JSON, BindParameter, Update, any_, bindparam, delete, null, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shared.jobs.raw_sql import fetchrow, row_parameters, row_source
from shared.models import ApiKey, Job, Tenant
from shared.tenants.apikeys import Scope
from shared.tenants.tenancy import TenantLimits

_JOB = Job.__table__
_JOB_TABLE, _KEY_TABLE, _TENANT_TABLE = (
    Job.__tablename__,
    ApiKey.__tablename__,
    Tenant.__tablename__,
)
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_JSON_COLUMNS = frozenset(column.key for column in _JOB.c if isinstance(column.type, JSON))


@dataclass(frozen=True)
class PresentedKey:
    """The presented key's row (live keys only) and whether the jobs were stored with it."""

    tenant_id: uuid.UUID
    secret_hash: bytes
    scopes: frozenset[str]
    limits: TenantLimits
    stored: bool


def _rows_of(columns: tuple[str, ...], first: int, *, one_job: bool) -> str:
    types = [_JOB.c[column].type.compile(dialect=_DIALECT) for column in columns]
    return row_source(types, first=first, one_row=one_job)


def _names(columns: tuple[str, ...]) -> str:
    # Looked up in the table definition: an unknown name fails here, never reaches SQL.
    return ", ".join(_JOB.c[column].name for column in columns)


# The f-strings below splice in only names from the table definitions and `$n` placeholders;
# every value travels as a bound parameter (hence the `noqa: S608`). One text per column set.
@functools.lru_cache(maxsize=64)
def _check_and_store_sql(columns: tuple[str, ...], one_job: bool) -> str:
    return f"""
WITH presented AS (
    SELECT k.tenant_id, k.secret_hash, k.scopes, t.rate_limit_per_second,
           t.rate_limit_burst, t.max_concurrent_jobs
    FROM {_KEY_TABLE} AS k JOIN {_TENANT_TABLE} AS t ON t.id = k.tenant_id
    WHERE k.id = $1 AND k.revoked_at IS NULL
), stored AS (
    INSERT INTO {_JOB_TABLE} (tenant_id, {_names(columns)})
    SELECT presented.tenant_id, v.*
    FROM presented, {_rows_of(columns, 5, one_job=one_job)} AS v ({_names(columns)})
    WHERE presented.secret_hash = $2 AND $3 = ANY(presented.scopes)
      AND presented.rate_limit_per_second IS NULL AND $4::boolean
    RETURNING id
)
SELECT presented.*, EXISTS (SELECT FROM stored) AS stored FROM presented
"""  # noqa: S608


@functools.lru_cache(maxsize=64)
def _store_sql(columns: tuple[str, ...], one_job: bool) -> str:
    return (
        f"INSERT INTO {_JOB_TABLE} (tenant_id, {_names(columns)})"  # noqa: S608
        f" SELECT $1::uuid, v.* FROM {_rows_of(columns, 2, one_job=one_job)} AS v"
    )


def _columns(jobs: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    columns = tuple(jobs[0])
    if any(tuple(job) != columns for job in jobs):
        raise ValueError("every job of one statement must have the same columns")
    return columns


async def check_key_and_store(
    engine: AsyncEngine,
    *,
    key_id: uuid.UUID,
    secret_hash: bytes,
    jobs: Sequence[Mapping[str, Any]],
    may_store: bool,
) -> PresentedKey | None:
    """Look the key up and store `jobs` (column values, no tenant) if the key may submit them.

    All or nothing, in one statement. `may_store` is False when the caller has something to do
    first whatever the tenant (charge a default rate limit that applies to every tenant, lock
    concurrency keys): then nothing is stored here. None: no live key.
    """
    columns, one_job = _columns(jobs), len(jobs) == 1
    row = await fetchrow(
        engine,
        _check_and_store_sql(columns, one_job),
        key_id,
        secret_hash,
        Scope.SUBMIT.value,
        may_store,
        *_encoded(columns, jobs, one_job=one_job),
    )
    if row is None:
        return None
    return PresentedKey(
        tenant_id=row["tenant_id"],
        secret_hash=row["secret_hash"],
        scopes=frozenset(row["scopes"]),
        limits=TenantLimits(
            rate_limit_per_second=row["rate_limit_per_second"],
            rate_limit_burst=row["rate_limit_burst"],
            max_concurrent_jobs=row["max_concurrent_jobs"],
        ),
        stored=row["stored"],
    )


async def store_jobs(
    engine: AsyncEngine, *, tenant_id: uuid.UUID, jobs: Sequence[Mapping[str, Any]]
) -> None:
    """Store jobs of an authenticated tenant (after its rate-limit tokens were taken)."""
    columns, one_job = _columns(jobs), len(jobs) == 1
    sql = _store_sql(columns, one_job)
    await fetchrow(engine, sql, tenant_id, *_encoded(columns, jobs, one_job=one_job))


def _encoded(
    columns: tuple[str, ...], jobs: Sequence[Mapping[str, Any]], *, one_job: bool
) -> list[Any]:
    """The parameters of `_rows_of`, one list (or value) per column."""
    # SQLAlchemy's asyncpg codecs take JSON as text (its bind processors serialise first).
    return row_parameters(
        [
            [json.dumps(job[column]) for job in jobs]
            if column in _JSON_COLUMNS
            else [job[column] for job in jobs]
            for column in columns
        ],
        one_row=one_job,
    )


_JOB_COLUMNS = tuple(column.key for column in _JOB.columns)
_INSERT_JOB = pg_insert(Job)


def _complete(row: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of the row, those not given as NULL (one key set for an executemany)."""
    unknown = set(row) - set(_JOB_COLUMNS)
    if unknown:
        raise ValueError(f"not columns of job: {sorted(unknown)}")
    return {key: row.get(key) for key in _JOB_COLUMNS}


async def insert_jobs(
    session: AsyncSession, *, tenant_id: uuid.UUID, jobs: Sequence[Mapping[str, Any]]
) -> None:
    """Insert new jobs (column values) of this tenant in the session's transaction.

    One Core `INSERT` (several jobs: one executemany, batched into multi-row statements): the
    rows are complete as built, so the ORM unit of work would only add cost.
    """
    if any(job["tenant_id"] != tenant_id for job in jobs):
        raise ValueError("job belongs to another tenant")
    if jobs:  # an empty executemany is deprecated in SQLAlchemy
        connection = await session.connection()
        await connection.execute(_INSERT_JOB, [_complete(job) for job in jobs])


async def insert_job_once(
    session: AsyncSession, *, tenant_id: uuid.UUID, job: Mapping[str, Any]
) -> bool:
    """Insert a job carrying an idempotency key; False if the tenant already used that key."""
    if job["tenant_id"] != tenant_id or job.get("idempotency_key") is None:
        raise ValueError("insert_job_once needs the tenant's job with an idempotency key")
    values = {key: value for key, value in _complete(job).items() if value is not None}
    stmt = (
        pg_insert(Job)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[Job.tenant_id, Job.idempotency_key],
            index_where=Job.idempotency_key.is_not(None),
        )
        .returning(Job.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


_IDS = ARRAY(UUID)


@functools.cache
def _discard_statement() -> Update:
    """Delete jobs and unlink whatever names them as its re-run, in one statement.

    The `UPDATE` takes its ids from the `DELETE`'s `RETURNING`, so it runs after it: a
    workflow step's old job becomes its step's current job again only once the new job is
    gone (the unique index on (workflow, step) allows one). Named parameters only: SQLAlchemy's
    statement cache could not fill in anonymous ones inside a DML CTE.
    """
    tenant_id: BindParameter[uuid.UUID] = bindparam("p_tenant_id")
    gone = (
        delete(Job)
        .where(Job.tenant_id == tenant_id, Job.id == any_(bindparam("p_job_ids", type_=_IDS)))
        .returning(Job.id)
        .cte("gone")
    )
    return (
        sql_update(Job)
        .where(Job.tenant_id == tenant_id, Job.retried_by.in_(select(gone.c.id)))
        .values(retried_by=null())
        .add_cte(gone)
        .execution_options(synchronize_session=False)
    )


async def discard_jobs(
    connection: AsyncSession | AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    job_ids: Sequence[uuid.UUID],
) -> None:
    """Undo the creation of jobs that never reached a queue (their hand-off to Redis failed).

    Removes the rows and the links other jobs hold to them (`retried_by` of the job they
    re-run), atomically, so a refused hand-off leaves no trace.
    """
    await connection.execute(
        _discard_statement(), {"p_tenant_id": tenant_id, "p_job_ids": list(job_ids)}
    )
