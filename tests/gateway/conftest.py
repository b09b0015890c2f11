"""Gateway fixtures: callers of two tenants, and apps built from adjusted settings."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_tenant


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
