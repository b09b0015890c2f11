"""Who is calling: API keys for `/jobs*` (scoped), the operator token for `/admin`."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from gateway.deps import Resources, SessionDep, SettingsDep
from shared import store
from shared.apikeys import Scope, parse_token
from shared.errors import Unauthenticated
from shared.models import Job
from shared.tenancy import UNKNOWN_KEY, Principal, authenticate, check_scope

_API_KEY = "An API key: `Authorization: Bearer jg_...`"
_bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey", description=_API_KEY)
_admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="The operator token."
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]


def require_scope(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency resolving the caller's key and insisting on `scope`."""

    async def principal(credentials: Credentials, session: SessionDep) -> Principal:
        return await _principal(session, credentials, scope)

    return principal


async def _principal(
    session: AsyncSession, credentials: HTTPAuthorizationCredentials | None, scope: Scope
) -> Principal:
    if credentials is None:
        raise Unauthenticated()
    found = await authenticate(session, credentials.credentials)
    if found is None:
        raise Unauthenticated(UNKNOWN_KEY)
    check_scope(found.scopes, scope)
    return found


class _SubmitKey(HTTPBearer):
    """The presented API key, checked for shape only: the submit statement checks it for real.

    As a dependency, so a request without a usable key is a 401 even when its body is invalid
    too (FastAPI reports dependency errors before body errors). The `ApiKey` scheme itself
    rather than a function of `Credentials`: one dependency where nesting made two, which
    FastAPI resolves on every submit, the API's hot path.
    """

    async def __call__(self, request: HTTPConnection) -> str:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            raise Unauthenticated()
        if parse_token(credentials.credentials) is None:
            raise Unauthenticated(UNKNOWN_KEY)
        return credentials.credentials


SubmitToken = Annotated[
    str, Depends(_SubmitKey(auto_error=False, scheme_name="ApiKey", description=_API_KEY))
]
SubmitAuth = Annotated[Principal, Depends(require_scope(Scope.SUBMIT))]
ReadAuth = Annotated[Principal, Depends(require_scope(Scope.READ))]
CancelAuth = Annotated[Principal, Depends(require_scope(Scope.CANCEL))]


@dataclass(frozen=True)
class SubmitAccess:
    """What a submit needs: the caller (`submit` scope), its session, the app's resources."""

    principal: Principal
    session: AsyncSession
    resources: Resources


@asynccontextmanager
async def open_submit_access(resources: Resources, token: str) -> AsyncIterator[SubmitAccess]:
    """A session with the key (from `SubmitToken`) checked for the submit scope (no caching:
    a revoked key fails on its next request)."""
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    async with resources.sessionmaker() as session:  # closing returns the connection
        principal = await _principal(session, credentials, Scope.SUBMIT)
        yield SubmitAccess(principal=principal, session=session, resources=resources)


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
