"""Who is calling: API keys for `/jobs*` (scoped), the operator token for `/admin`."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.deps import SessionDep, SettingsDep
from shared import store
from shared.apikeys import Scope
from shared.errors import Forbidden, Unauthenticated
from shared.models import Job
from shared.tenancy import Principal, authenticate

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer jg_...`")
_admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="The operator token."
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]


def require_scope(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency resolving the caller's key and insisting on `scope`."""

    async def principal(credentials: Credentials, session: SessionDep) -> Principal:
        if credentials is None:
            raise Unauthenticated()
        found = await authenticate(session, credentials.credentials)
        if found is None:
            raise Unauthenticated("The API key is unknown or revoked.")
        if scope.value not in found.scopes:
            raise Forbidden(f"This API key lacks the `{scope.value}` scope.")
        return found

    return principal


SubmitAuth = Annotated[Principal, Depends(require_scope(Scope.SUBMIT))]
ReadAuth = Annotated[Principal, Depends(require_scope(Scope.READ))]
CancelAuth = Annotated[Principal, Depends(require_scope(Scope.CANCEL))]


async def owned_job(job_id: uuid.UUID, principal: ReadAuth, session: SessionDep) -> Job:
    """The path's job, loaded for the caller's tenant (another tenant's job is a 404)."""
    return await store.get_job(session, tenant_id=principal.tenant_id, job_id=job_id)


OwnedJob = Annotated[Job, Depends(owned_job)]


async def require_admin(credentials: AdminCredentials, settings: SettingsDep) -> None:
    """Only the operator token passes; with no token configured the admin API is closed."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else None
    presented = credentials.credentials if credentials else None
    if expected is None or presented is None:
        raise Unauthenticated("The operator token is required (JOBGATE_ADMIN_TOKEN).")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthenticated("The operator token is wrong.")


AdminAuth = Depends(require_admin)
