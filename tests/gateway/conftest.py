"""Gateway fixtures: callers of two tenants, and apps built from adjusted settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import create_app
from shared.settings import Settings
from tests.factories import make_tenant

ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def token(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """A key with every scope, of the tenant `acme`."""
    _, first_key = await make_tenant(sessionmaker, "acme")
    return first_key


@pytest.fixture
async def other_token(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """A key with every scope, of another tenant, `globex`."""
    _, first_key = await make_tenant(sessionmaker, "globex")
    return first_key


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[ClientFactory]:
    """Build a gateway from `settings` with some fields replaced, lifespan running."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: object) -> httpx.AsyncClient:
            app = create_app(settings.model_copy(update=overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://jobgate.test")
            )

        yield make
