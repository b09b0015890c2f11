"""Tenants, their API keys and webhook secrets: create, issue, revoke, rotate, authenticate."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.apikeys import ALL_SCOPES, Scope, issue_key, parse_token, secret_matches
from shared.errors import ApiKeyNotFound, TenantExists, TenantNotFound
from shared.ids import new_id
from shared.models import ApiKey, Tenant, new_webhook_secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, through one of its keys, with that key's scopes."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]


@dataclass(frozen=True)
class NewKey:
    """A key just issued; `token` is shown to its owner once and never stored."""

    key: ApiKey
    token: str


RESERVED_PREFIX = "_"


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


async def authenticate(session: AsyncSession, token: str) -> Principal | None:
    """The principal a presented key stands for, or None (unknown, wrong or revoked)."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = (
        await session.execute(
            select(ApiKey.tenant_id, ApiKey.secret_hash, ApiKey.scopes).where(
                ApiKey.id == key_id, ApiKey.revoked_at.is_(None)
            )
        )
    ).one_or_none()
    if row is None or not secret_matches(secret, row.secret_hash):
        return None
    return Principal(tenant_id=row.tenant_id, key_id=key_id, scopes=frozenset(row.scopes))


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
