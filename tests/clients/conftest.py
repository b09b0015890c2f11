"""Client fixtures: a live gateway with a worker on a real port, and a tenant's API key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.factories import make_tenant
from tests.live_gateway import LiveGateway


@pytest.fixture
def live_gateway(settings: Settings) -> Iterator[LiveGateway]:
    """jobgate over real HTTP at `live_gateway.url`, with a worker on the default queue."""
    with LiveGateway(settings) as gateway:
        yield gateway


@pytest.fixture
async def api_key(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """A key with every scope, of a tenant of its own."""
    _, token = await make_tenant(sessionmaker, "clients")
    return token
