"""Dashboard sessions: an opaque random id in a cookie, who signed in kept in Redis.

The cookie holds 256 random bits and nothing else, so there is nothing in it to sign or to
read: guessing one is as hard as guessing a key. Redis keeps the session under the SHA-256 of
that id (a copy of Redis yields no usable cookie), with who signed in (a tenant's key by its
id, never the key itself, or the operator), the session's CSRF token and a TTL. Signing out
deletes it; a revoked key or a changed operator token ends it on the next request.

The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends
it), `Secure` whenever the request came over HTTPS, and scoped to `/ui`.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

from shared.keys import ui_session_key

COOKIE_NAME = "jobgate_ui"
COOKIE_PATH = "/ui"
SESSION_TTL_SECONDS = 8 * 3600
"""A working day; signing in again costs one paste of the key."""
_MAX_COOKIE_CHARS = 64


class UiSession(BaseModel):
    """What a session stands for."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["tenant", "admin"]
    csrf_token: str
    tenant_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    admin_fingerprint: str | None = None
    """SHA-256 of the operator token signed in with: a new token ends the old sessions."""


def fingerprint(secret: str) -> str:
    """A one-way digest of a secret, safe to store and compare."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


async def open_session(redis: Redis, session: UiSession) -> str:
    """Store a new session; returns the cookie value that stands for it."""
    cookie = secrets.token_urlsafe(32)
    await redis.set(
        ui_session_key(fingerprint(cookie)), session.model_dump_json(), ex=SESSION_TTL_SECONDS
    )
    return cookie


async def load_session(redis: Redis, cookie: str) -> UiSession | None:
    """The session a cookie stands for, or None (unknown, expired or signed out)."""
    if not cookie or len(cookie) > _MAX_COOKIE_CHARS:
        return None
    stored = await redis.get(ui_session_key(fingerprint(cookie)))
    if stored is None:
        return None
    try:
        return UiSession.model_validate_json(stored)
    except ValidationError:  # written by another version: treat as signed out
        return None


async def close_session(redis: Redis, cookie: str) -> None:
    """Forget a session (signing out, or its key was revoked)."""
    await redis.delete(ui_session_key(fingerprint(cookie)))


def set_session_cookie(response: Response, request: Request, cookie: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=SESSION_TTL_SECONDS,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
