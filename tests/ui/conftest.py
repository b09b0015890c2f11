"""Dashboard fixtures: two tenants' keys, and signing a client in through the login form."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_tenant

_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def acme(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    """Tenant `acme`: (tenant id, key with every scope)."""
    return await make_tenant(sessionmaker, "acme")


@pytest.fixture
async def globex(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    """Tenant `globex`: (tenant id, key with every scope)."""
    return await make_tenant(sessionmaker, "globex")


async def post_login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """Post the sign-in form as a browser does: with a same-origin `Origin`, without which it
    is refused."""
    origin = {"Origin": str(client.base_url).rstrip("/")}
    return await client.post("/ui/login", data={"token": token}, headers=origin)


async def sign_in(client: httpx.AsyncClient, token: str) -> None:
    """Sign the client in with the login form; its cookie jar keeps the session."""
    response = await post_login(client, token)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui"


async def csrf_token(client: httpx.AsyncClient, page: str = "/ui") -> str:
    """The CSRF token the signed-in client's pages carry in their forms."""
    response = await client.get(page)
    assert response.status_code == 200, response.text
    found = _CSRF_INPUT.search(response.text)
    assert found, "no CSRF field on the page"
    return found.group(1)
