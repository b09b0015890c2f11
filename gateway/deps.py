"""Request dependencies, each alias declared once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.job_events import JobEvents
from gateway.known_keys import KnownKeys
from shared.contracts import Registry
from shared.settings import Settings


@dataclass(frozen=True)
class Resources:
    """What the app's lifespan opens and closes, shared by every request."""

    settings: Settings
    registry: Registry
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    events: JobEvents
    jobs_submitted: Counter
    jobs_cancelled: Counter
    known_keys: KnownKeys


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings_dep(resources: ResourcesDep) -> Settings:
    return resources.settings


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    # Services commit explicitly; closing here only returns the connection to the pool.
    async with resources.sessionmaker() as session:
        yield session


async def get_redis(resources: ResourcesDep) -> ArqRedis:
    return resources.redis


async def get_events(resources: ResourcesDep) -> JobEvents:
    return resources.events


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
EventsDep = Annotated[JobEvents, Depends(get_events)]
