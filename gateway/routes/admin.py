"""`/admin`: tenants and API keys, for the operator token only."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from gateway.auth import AdminAuth
from gateway.deps import SessionDep
from gateway.problems import problems
from gateway.schemas import (
    ApiKeyOut,
    CreatedKey,
    CreatedTenant,
    KeyIn,
    TenantIn,
    key_out,
    tenant_out,
)
from shared import tenancy

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminAuth])


@router.post(
    "/tenants", status_code=201, operation_id="create_tenant", responses=problems(401, 409, 422)
)
async def create_tenant(body: TenantIn, session: SessionDep) -> CreatedTenant:
    """Create a tenant; its first API key is in the answer and nowhere else."""
    tenant, first_key = await tenancy.create_tenant(session, name=body.name)
    return CreatedTenant(tenant=tenant_out(tenant), api_key=first_key.token)


@router.post(
    "/tenants/{tenant}/keys",
    status_code=201,
    operation_id="create_api_key",
    responses=problems(401, 404, 422),
)
async def create_api_key(tenant: str, body: KeyIn, session: SessionDep) -> CreatedKey:
    """Issue another key for a tenant (by id or name), with the given scopes."""
    found = await tenancy.find_tenant(session, tenant=tenant)
    new_key = await tenancy.create_api_key(
        session, tenant_id=found.id, name=body.name, scopes=body.scopes
    )
    return CreatedKey(key=key_out(new_key.key), api_key=new_key.token)


@router.post(
    "/keys/{key_id}/revoke", operation_id="revoke_api_key", responses=problems(401, 404, 422)
)
async def revoke_api_key(key_id: uuid.UUID, session: SessionDep) -> ApiKeyOut:
    """Revoke a key; requests with it fail from now on."""
    return key_out(await tenancy.revoke_api_key(session, key_id=key_id))
