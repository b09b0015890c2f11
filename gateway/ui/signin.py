"""Signing in to the dashboard with an API key or the operator token, and signing out.

The key travels once, in the body of a same-origin POST; it is checked like an API request's
and then forgotten: the session keeps only the key's id (see `gateway.ui.sessions`).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from gateway.deps import Resources, ResourcesDep
from gateway.ui.access import PostedForm, ViewerDep, admin_token, check_same_origin
from gateway.ui.sessions import (
    COOKIE_NAME,
    UiSession,
    clear_session_cookie,
    close_session,
    fingerprint,
    load_session,
    new_csrf_token,
    open_session,
    set_session_cookie,
)
from gateway.ui.templating import render
from shared.tenants.apikeys import Scope
from shared.tenants.tenancy import authenticate

router = APIRouter()
MAX_TOKEN_CHARS = 512


@router.get("/login")
async def login_page(request: Request, resources: ResourcesDep) -> Response:
    cookie = request.cookies.get(COOKIE_NAME, "")
    if await load_session(resources.redis, cookie) is not None:
        return RedirectResponse("/ui", status_code=303)
    return render(request, "login.html", None)


async def _session_for(resources: Resources, token: str) -> UiSession | str:
    """The session a presented secret opens, or why it opens none."""
    expected = admin_token(resources)
    if expected is not None and hmac.compare_digest(token.encode(), expected.encode()):
        return UiSession(
            kind="admin", csrf_token=new_csrf_token(), admin_fingerprint=fingerprint(expected)
        )
    async with resources.sessionmaker() as db:
        principal = await authenticate(db, token)
    if principal is None:
        return "This key is unknown or revoked."
    if Scope.READ.value not in principal.scopes:
        return f"This key lacks the `{Scope.READ.value}` scope the dashboard needs."
    return UiSession(
        kind="tenant",
        csrf_token=new_csrf_token(),
        tenant_id=principal.tenant_id,
        key_id=principal.key_id,
    )


@router.post("/login")
async def login(request: Request, resources: ResourcesDep) -> Response:
    check_same_origin(request, origin_required=True)
    form = await request.form()
    token = form.get("token")
    token = token.strip() if isinstance(token, str) else ""
    found: UiSession | str = "Paste an API key or the operator token."
    if 0 < len(token) <= MAX_TOKEN_CHARS:
        found = await _session_for(resources, token)
    if isinstance(found, str):  # the page never echoes what was typed
        return render(request, "login.html", None, status_code=401, error=found)
    response = RedirectResponse("/ui", status_code=303)
    set_session_cookie(response, request, await open_session(resources.redis, found))
    return response


@router.post("/logout")
async def logout(
    request: Request, viewer: ViewerDep, form: PostedForm, resources: ResourcesDep
) -> Response:
    await close_session(resources.redis, viewer.cookie)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session_cookie(response, request)
    return response
