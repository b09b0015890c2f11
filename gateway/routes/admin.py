"""`/admin`: tenants, API keys and webhook secrets, for the operator token only."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from gateway.auth import AdminAuth, authenticated_first, check_operator_token
from gateway.deps import SessionDep
from gateway.problems import problems
from gateway.schemas import (
    ApiKeyOut,
    CreatedKey,
    CreatedTenant,
    KeyIn,
    TenantIn,
    TenantLimitsIn,
    TenantLimitsOut,
    WebhookSecretOut,
    key_out,
    limits_out,
    tenant_out,
)
from shared.tenants import tenancy

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminAuth],  # declares the scheme in OpenAPI; the route class checks first
    route_class=authenticated_first(check_operator_token),
)


@router.post(
    "/tenants",
    status_code=201,
    operation_id="create_tenant",
    summary="Create a tenant and its first API key",
    responses=problems(401, 409, 422),
)
async def create_tenant(body: TenantIn, session: SessionDep) -> CreatedTenant:
    """Create a tenant; its first API key and its webhook secret are in the answer only."""
    tenant, first_key = await tenancy.create_tenant(session, name=body.name)
    return CreatedTenant(
        tenant=tenant_out(tenant), api_key=first_key.token, webhook_secret=tenant.webhook_secret
    )


@router.post(
    "/tenants/{tenant}/webhook-secret",
    operation_id="rotate_webhook_secret",
    summary="Rotate a tenant's webhook signing secret",
    responses=problems(401, 404, 422),
)
async def rotate_webhook_secret(tenant: str, session: SessionDep) -> WebhookSecretOut:
    """Replace a tenant's (by id or name) webhook signing secret; the new one is shown once.

    It signs every later attempt at once, retries of earlier deliveries included.
    """
    found = await tenancy.find_tenant(session, tenant=tenant)
    rotated = await tenancy.rotate_webhook_secret(session, tenant_id=found.id)
    return WebhookSecretOut(tenant=tenant_out(rotated), webhook_secret=rotated.webhook_secret)


@router.put(
    "/tenants/{tenant}/limits",
    operation_id="set_tenant_limits",
    summary="Set a tenant's rate limit and concurrency quota",
    responses=problems(401, 404, 422),
)
async def set_tenant_limits(
    tenant: str, body: TenantLimitsIn, session: SessionDep
) -> TenantLimitsOut:
    """Replace a tenant's (by id or name) rate limit and concurrency quota.

    The body replaces all three: a field left out or null falls back to the configured default
    (`JOBGATE_RATE_LIMIT_PER_SECOND`, `JOBGATE_RATE_LIMIT_BURST`,
    `JOBGATE_TENANT_MAX_CONCURRENT_JOBS`; unset: unlimited). The rate limit applies from the
    tenant's next submit; workers apply a new quota within a few seconds.
    """
    found = await tenancy.find_tenant(session, tenant=tenant)
    updated = await tenancy.set_limits(session, tenant_id=found.id, limits=body.limits())
    return limits_out(updated)


@router.post(
    "/tenants/{tenant}/keys",
    status_code=201,
    operation_id="create_api_key",
    summary="Issue another API key for a tenant",
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
    "/keys/{key_id}/revoke",
    operation_id="revoke_api_key",
    summary="Revoke an API key",
    responses=problems(401, 404, 422),
)
async def revoke_api_key(key_id: uuid.UUID, session: SessionDep) -> ApiKeyOut:
    """Revoke a key; requests with it fail from now on."""
    return key_out(await tenancy.revoke_api_key(session, key_id=key_id))
