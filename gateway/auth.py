"""Who is calling: API keys for `/jobs*` (scoped), the operator token for `/admin`.

FastAPI reads and parses a route's body before it solves the route's dependencies, so the
dependencies alone would let a caller without a valid key make the gateway parse (and, on the
submit fast path, validate) up to `max_body_bytes` and answer with every problem found.
Routes that take a body therefore check the caller first (`authenticated_first`), and the
dependencies remain what the route relies on.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from starlette.responses import Response

from gateway.deps import Resources, SessionDep, SettingsDep
from shared.errors import Unauthenticated
from shared.jobs import store
from shared.models import Job
from shared.settings import Settings
from shared.tenants.apikeys import Scope, parse_token
from shared.tenants.tenancy import UNKNOWN_KEY, Principal, authenticate, check_scope

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
    _check_operator_token(credentials, settings)


def _check_operator_token(
    credentials: HTTPAuthorizationCredentials | None, settings: Settings
) -> None:
    expected = settings.admin_token.get_secret_value() if settings.admin_token else None
    presented = credentials.credentials if credentials else None
    if expected is None or presented is None:
        raise Unauthenticated("The operator token is required (JOBGATE_ADMIN_TOKEN).")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthenticated("The operator token is wrong.")


AdminAuth = Depends(require_admin)


Check = Callable[[Request], Awaitable[None]]
"""Refuses a request whose caller may not use the route (raises a `JobgateError`)."""


async def check_api_key(request: Request, scope: Scope | None = None) -> None:
    """A live API key (else 401) holding `scope`, if given (else 403), before any body is read.

    A key proven in the last minute is taken from `KnownKeys` (the submit fast path then still
    costs one statement); others are looked up.
    """
    credentials = await _bearer(request)
    if credentials is None:
        raise Unauthenticated()
    parsed = parse_token(credentials.credentials)
    if parsed is None:
        raise Unauthenticated(UNKNOWN_KEY)
    key_id, secret = parsed
    resources: Resources = request.app.state.resources
    scopes = resources.known_keys.scopes_of(key_id, secret)
    if scopes is None:
        async with resources.sessionmaker() as session:  # closing returns the connection
            found = await authenticate(session, credentials.credentials)
        if found is None:
            raise Unauthenticated(UNKNOWN_KEY)
        resources.known_keys.remember(key_id, secret, found.scopes)
        scopes = found.scopes
    if scope is not None:
        check_scope(scopes, scope)


async def check_operator_token(request: Request) -> None:
    """The operator token (else 401), before any body is read."""
    resources: Resources = request.app.state.resources
    _check_operator_token(await _admin_bearer(request), resources.settings)


def authenticated_first(check: Check) -> type[APIRoute]:
    """A route class that runs `check` before FastAPI reads, parses and validates the body."""

    class AuthenticatedFirstRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            declared = super().get_route_handler()

            async def handle(request: Request) -> Response:
                await check(request)
                return await declared(request)

            return handle

    return AuthenticatedFirstRoute
