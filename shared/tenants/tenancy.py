"""Tenants, their API keys, webhook secrets and limits: create, issue, revoke, rotate, limit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ApiKeyNotFound, Forbidden, TenantExists, TenantNotFound
from shared.ids import new_id
from shared.models import ApiKey, Tenant, new_webhook_secret
from shared.tenants.apikeys import ALL_SCOPES, Scope, issue_key, parse_token, secret_matches


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's own limits; None means the configured default for that limit."""

    rate_limit_per_second: float | None = None
    rate_limit_burst: int | None = None
    max_concurrent_jobs: int | None = None

    @classmethod
    def of(cls, tenant: Tenant) -> TenantLimits:
        return cls(
            rate_limit_per_second=tenant.rate_limit_per_second,
            rate_limit_burst=tenant.rate_limit_burst,
            max_concurrent_jobs=tenant.max_concurrent_jobs,
        )


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, through one of its keys, with that key's scopes."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]
    limits: TenantLimits = field(default_factory=TenantLimits)
    """The tenant's limits, read with the key (no extra query per request)."""


@dataclass(frozen=True)
class NewKey:
    """A key just issued; `token` is shown to its owner once and never stored."""

    key: ApiKey
    token: str


RESERVED_PREFIX = "_"
UNKNOWN_KEY = "The API key is unknown or revoked."
"""The 401's detail: an unknown key and a revoked one look the same to the caller."""


def check_scope(scopes: frozenset[str], scope: Scope) -> None:
    """Raise `Forbidden` unless a key with these scopes may do what `scope` names."""
    if scope.value not in scopes:
        raise Forbidden(f"This API key lacks the `{scope.value}` scope.")


async def create_tenant(session: AsyncSession, *, name: str) -> tuple[Tenant, NewKey]:
    """A new tenant, its first key (all scopes) and its webhook secret; commits."""
    if name.startswith(RESERVED_PREFIX):
        raise TenantExists(f"Tenant names starting with {RESERVED_PREFIX!r} are reserved.")
    tenant = Tenant(id=new_id(), name=name, webhook_secret=new_webhook_secret())
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise TenantExists(f"A tenant named {name!r} already exists.") from None
    new_key = _add_key(session, tenant_id=tenant.id, name="first key", scopes=ALL_SCOPES)
    await session.commit()
    return tenant, new_key


async def rotate_webhook_secret(session: AsyncSession, *, tenant_id: uuid.UUID) -> Tenant:
    """Give a tenant a new webhook secret (returned on the tenant); commits.

    Effective at once: every later attempt, including retries of earlier deliveries, is signed
    with the new secret.
    """
    result = await session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(webhook_secret=new_webhook_secret())
        .returning(Tenant)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    tenant = result.scalar_one_or_none()
    if tenant is None:
        raise TenantNotFound()
    await session.commit()
    return tenant


async def find_tenant(session: AsyncSession, *, tenant: str) -> Tenant:
    """A tenant by id or by name."""
    if "\x00" in tenant:  # no name holds it, and PostgreSQL text refuses it (a 503, not a 404)
        raise TenantNotFound(f"No tenant {tenant!r}.")
    try:
        condition = Tenant.id == uuid.UUID(tenant)
    except ValueError:
        condition = Tenant.name == tenant
    found = (await session.execute(select(Tenant).where(condition))).scalar_one_or_none()
    if found is None:
        raise TenantNotFound(f"No tenant {tenant!r}.")
    return found


def _add_key(
    session: AsyncSession, *, tenant_id: uuid.UUID, name: str | None, scopes: Sequence[Scope]
) -> NewKey:
    issued = issue_key(new_id())
    key = ApiKey(
        id=issued.key_id,
        tenant_id=tenant_id,
        name=name,
        secret_hash=issued.secret_hash,
        scopes=sorted({scope.value for scope in scopes}),
    )
    session.add(key)
    return NewKey(key=key, token=issued.token)


async def create_api_key(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str | None = None,
    scopes: Sequence[Scope] = ALL_SCOPES,
) -> NewKey:
    """Issue another key for a tenant; commits."""
    new_key = _add_key(session, tenant_id=tenant_id, name=name, scopes=scopes)
    await session.commit()
    return new_key


async def revoke_api_key(session: AsyncSession, *, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key; effective for the very next request. Revoking twice is harmless."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(revoked_at=func.coalesce(ApiKey.revoked_at, func.now()))
        .returning(ApiKey)
    )
    key = result.scalar_one_or_none()
    if key is None:
        raise ApiKeyNotFound()
    await session.commit()
    return key


_KeyRow = Row[uuid.UUID, bytes, list[str], float | None, int | None, int | None]

# Built once: every request runs it, and building a statement costs more than running it.
_KEY_LOOKUP = (
    select(
        ApiKey.tenant_id,
        ApiKey.secret_hash,
        ApiKey.scopes,
        Tenant.rate_limit_per_second,
        Tenant.rate_limit_burst,
        Tenant.max_concurrent_jobs,
    )
    .join(Tenant, Tenant.id == ApiKey.tenant_id)
    .where(ApiKey.id == bindparam("key_id"), ApiKey.revoked_at.is_(None))
)


async def authenticate(session: AsyncSession, token: str) -> Principal | None:
    """The principal a presented key stands for, or None (unknown, wrong or revoked)."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    # On the session's connection, in its transaction: plain rows need no ORM result machinery.
    connection = await session.connection()
    row = (await connection.execute(_KEY_LOOKUP, {"key_id": key_id})).one_or_none()
    if row is None or not secret_matches(secret, row.secret_hash):
        return None
    return _principal_of(row, key_id)


async def active_key(session: AsyncSession, key_id: uuid.UUID) -> Principal | None:
    """The principal of a key already proven (a dashboard session holds only its id), or None
    once it is revoked: re-checked on every request, like `authenticate`."""
    connection = await session.connection()
    row = (await connection.execute(_KEY_LOOKUP, {"key_id": key_id})).one_or_none()
    return None if row is None else _principal_of(row, key_id)


def _principal_of(row: _KeyRow, key_id: uuid.UUID) -> Principal:
    limits = TenantLimits(
        rate_limit_per_second=row.rate_limit_per_second,
        rate_limit_burst=row.rate_limit_burst,
        max_concurrent_jobs=row.max_concurrent_jobs,
    )
    return Principal(
        tenant_id=row.tenant_id, key_id=key_id, scopes=frozenset(row.scopes), limits=limits
    )


async def set_limits(
    session: AsyncSession, *, tenant_id: uuid.UUID, limits: TenantLimits
) -> Tenant:
    """Replace a tenant's limits (None: the configured default); commits.

    Submits see them on the next request; workers within `worker_tenant_limits_cache_seconds`.
    """
    result = await session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(
            rate_limit_per_second=limits.rate_limit_per_second,
            rate_limit_burst=limits.rate_limit_burst,
            max_concurrent_jobs=limits.max_concurrent_jobs,
        )
        .returning(Tenant)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    tenant = result.scalar_one_or_none()
    if tenant is None:
        raise TenantNotFound()
    await session.commit()
    return tenant


async def max_concurrent_jobs(session: AsyncSession, *, tenant_id: uuid.UUID) -> int | None:
    """The tenant's own concurrency quota (None: the default, or no such tenant)."""
    result = await session.execute(select(Tenant.max_concurrent_jobs).where(Tenant.id == tenant_id))
    return result.scalar_one_or_none()


async def ensure_tenant(session: AsyncSession, *, name: str) -> uuid.UUID:
    """The id of the tenant called `name`, created if missing (safe under concurrency)."""
    await session.execute(
        pg_insert(Tenant)
        .values(id=new_id(), name=name)
        .on_conflict_do_nothing(index_elements=[Tenant.name])
    )
    tenant_id: uuid.UUID = (
        await session.execute(select(Tenant.id).where(Tenant.name == name))
    ).scalar_one()
    await session.commit()
    return tenant_id
