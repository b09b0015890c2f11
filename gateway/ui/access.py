"""Who is looking at the dashboard, re-checked on every request, and the CSRF guard of its forms."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.datastructures import FormData

from gateway.deps import Resources, ResourcesDep
from gateway.ui.queries import ALL_TENANTS, TenantScope
from gateway.ui.sessions import COOKIE_NAME, UiSession, close_session, fingerprint, load_session
from shared.errors import Forbidden
from shared.tenants.apikeys import Scope
from shared.tenants.tenancy import Principal, active_key

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No valid session: the dashboard answers with a redirect to its sign-in page."""


@dataclass(frozen=True)
class Viewer:
    """A signed-in dashboard user: a tenant through one of its keys, or the operator."""

    session: UiSession
    cookie: str
    principal: Principal | None
    """The tenant's key as it is now (scopes included); None for the operator."""

    @property
    def is_admin(self) -> bool:
        return self.principal is None

    @property
    def tenant(self) -> TenantScope:
        """Whose jobs this viewer sees: its tenant's, or every tenant's for the operator."""
        return ALL_TENANTS if self.principal is None else self.principal.tenant_id

    def can(self, scope: Scope) -> bool:
        """Whether the viewer's key has `scope` (the operator may do everything)."""
        return self.principal is None or scope.value in self.principal.scopes


def admin_token(resources: Resources) -> str | None:
    token = resources.settings.admin_token
    return None if token is None else token.get_secret_value()


async def _still_valid(resources: Resources, session: UiSession) -> Principal | bool | None:
    """The tenant session's principal now; True for a valid operator session; False if ended."""
    if session.kind == "admin":
        token = admin_token(resources)
        return token is not None and hmac.compare_digest(
            fingerprint(token), session.admin_fingerprint or ""
        )
    if session.key_id is None:
        return False
    async with resources.sessionmaker() as db:
        principal = await active_key(db, session.key_id)
    if principal is None or Scope.READ.value not in principal.scopes:
        return False
    return principal


async def current_viewer(request: Request, resources: ResourcesDep) -> Viewer:
    """The signed-in viewer; `SignInRequired` if there is none or the key was revoked."""
    cookie = request.cookies.get(COOKIE_NAME, "")
    session = await load_session(resources.redis, cookie)
    if session is None:
        raise SignInRequired()
    found = await _still_valid(resources, session)
    if found is False:
        await close_session(resources.redis, cookie)
        raise SignInRequired()
    principal = found if isinstance(found, Principal) else None
    return Viewer(session=session, cookie=cookie, principal=principal)


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def check_same_origin(request: Request, *, origin_required: bool = False) -> None:
    """Refuse a form posted from another site (browsers send `Origin` with every POST).

    SameSite=Strict already keeps the session cookie off such requests, and the CSRF token is
    checked too, so signed-in forms let a missing `Origin` pass unless `Sec-Fetch-Site` says
    cross-site. The sign-in form has neither guard (no session yet), so it passes
    `origin_required`: without a same-origin `Origin` (absent, or `null` from a sandboxed
    frame or a privacy setting), an older browser could be made to sign in to an attacker's
    account (login CSRF).
    """
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        site = request.headers.get("sec-fetch-site")
        if origin_required or site in ("cross-site", "same-site"):
            raise Forbidden("The form was posted from another site.")
        return
    # Behind a proxy that rewrites `Host`, the browser's host arrives as `X-Forwarded-Host`;
    # a cross-site form cannot set that header, so accepting it opens nothing.
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    if urlsplit(origin).netloc not in hosts - {None}:
        raise Forbidden("The form was posted from another site.")


async def posted_form(request: Request, viewer: ViewerDep) -> FormData:
    """The form of a signed-in POST, once its origin and CSRF token are checked."""
    check_same_origin(request)
    form = await request.form()
    presented = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), viewer.session.csrf_token.encode()
    ):
        raise Forbidden("The form's CSRF token is missing or wrong; reload the page.")
    return form


PostedForm = Annotated[FormData, Depends(posted_form)]
