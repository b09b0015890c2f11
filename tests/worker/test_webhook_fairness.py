"""Webhook fairness: one tenant's dead receivers cost that tenant, not the others.

Receivers are real HTTP servers on loopback: a dead one reads each request and never answers
(until the test ends), a live one answers at once. The real sender (`deliver_forever`) runs
against the test database; deliveries are owed by purging delayed jobs, as operators do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import control
from shared.models import WebhookDelivery
from shared.settings import Settings, WebhookSettings
from tests.factories import auth, make_tenant
from tests.polling import poll_until
from worker.webhook_sender import deliver_forever

LOOPBACK = ["127.0.0.0/8", "::1"]
DEAD_TIMEOUT_SECONDS = 15.0
"""How long an attempt waits for the dead receiver: the bound B's delivery must beat."""


@dataclass
class Server:
    """A loopback HTTP/1.1 receiver; a dead one never answers while the test runs."""

    is_dead: bool = False
    heads: list[bytes] = field(default_factory=list)
    open_connections: int = 0
    most_open_connections: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.most_open_connections = max(self.most_open_connections, self.open_connections)
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            if self.is_dead:
                await self.released.wait()
            else:
                writer.write(b"HTTP/1.1 204 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the sender gave up on it
        finally:
            self.open_connections -= 1
            writer.close()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/hook"


ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    """`await start_server(is_dead=...)`: a running receiver, stopped (and released) at the end."""
    running: list[tuple[Server, asyncio.Server]] = []

    async def start(*, is_dead: bool = False) -> Server:
        receiver = Server(is_dead=is_dead)
        server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
        receiver.port = server.sockets[0].getsockname()[1]
        running.append((receiver, server))
        return receiver

    yield start
    for receiver, server in running:
        receiver.released.set()
        server.close()
        await server.wait_closed()


def _limits(**limits: int) -> WebhookSettings:
    return WebhookSettings(
        timeout_seconds=DEAD_TIMEOUT_SECONDS,
        poll_interval_seconds=0.05,
        allowed_networks=LOOPBACK,
        **limits,
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhooks": _limits()})


@dataclass
class Owing:
    """How tests make tenants owe deliveries: through the gateway and an operator's purge."""

    client: httpx.AsyncClient
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis


@pytest.fixture
def owing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], arq_redis: ArqRedis
) -> Owing:
    return Owing(client, sessionmaker, arq_redis)


async def _owe_deliveries(
    owing: Owing,
    *,
    name: str,
    url: str,
    count: int,
) -> uuid.UUID:
    """A new tenant owing `count` deliveries to `url`, all due now: delayed jobs, purged."""
    tenant_id, token = await make_tenant(owing.sessionmaker, name)
    options = {"webhook_url": url, "delay_seconds": 600}
    body = {"jobs": [{"args": {"message": str(n)}, "options": options} for n in range(count)]}
    response = await owing.client.post("/jobs/echo/batch", json=body, headers=auth(token))
    assert response.status_code == 202, response.text[:500]
    tenant = uuid.UUID(tenant_id)
    async with owing.sessionmaker() as session:
        assert await control.purge_waiting(session, owing.redis, tenant_id=tenant) == count
    return tenant


async def _attempted(
    sessionmaker: async_sessionmaker[AsyncSession], tenants: list[uuid.UUID]
) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.tenant_id.in_(tenants), WebhookDelivery.attempts > 0)
        )
    return count or 0


async def _arrives_before_any_flood_attempt_ends(
    live: Server, sessionmaker: async_sessionmaker[AsyncSession], flooders: list[uuid.UUID]
) -> None:
    """Wait for `live` to be called; fail if any flooding delivery's attempt ends first.

    The flood's attempts end only when their dead receiver times out, so this bounds B's wait
    by the webhook timeout without depending on how fast this machine is.
    """
    while not live.heads:
        attempted = await _attempted(sessionmaker, flooders)
        assert attempted == 0, f"{attempted} flood attempts timed out before B was sent"
        await asyncio.sleep(0.05)


async def _run_sender(
    sessionmaker: async_sessionmaker[AsyncSession], webhooks: WebhookSettings
) -> asyncio.Task[None]:
    return asyncio.create_task(deliver_forever(sessionmaker, webhooks))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.timeout(90)
class TestFairness:
    async def test_a_tenant_flooding_a_dead_receiver_does_not_delay_another(
        self,
        owing: Owing,
        sessionmaker: async_sessionmaker[AsyncSession],
        start_server: ServerFactory,
    ) -> None:
        dead, live = await start_server(is_dead=True), await start_server()
        flooder = await _owe_deliveries(owing, name="a", url=dead.url, count=300)
        webhooks = _limits(max_in_flight=8, max_in_flight_per_tenant=4, max_in_flight_per_host=4)
        sender = await _run_sender(sessionmaker, webhooks)
        try:
            # The flood is in flight before B owes anything: B's delivery is due after it.
            await poll_until(lambda: bool(dead.heads), timeout=10, what="the flood is sent")
            await _owe_deliveries(owing, name="b", url=live.url, count=1)

            await _arrives_before_any_flood_attempt_ends(live, sessionmaker, [flooder])
        finally:
            await _stop(sender)

        assert len(live.heads) == 1
        assert dead.most_open_connections <= 4  # the tenant's cap, not every slot

    async def test_tenants_sharing_a_dead_host_do_not_take_every_slot(
        self,
        owing: Owing,
        sessionmaker: async_sessionmaker[AsyncSession],
        start_server: ServerFactory,
    ) -> None:
        """Each flooding tenant stays under its own cap; together they would fill all slots."""
        dead, live = await start_server(is_dead=True), await start_server()
        flooders = [
            await _owe_deliveries(owing, name=name, url=dead.url, count=20)
            for name in ("a1", "a2", "a3")
        ]
        webhooks = _limits(max_in_flight=6, max_in_flight_per_tenant=4, max_in_flight_per_host=3)
        sender = await _run_sender(sessionmaker, webhooks)
        try:
            await poll_until(lambda: bool(dead.heads), timeout=10, what="the flood is sent")
            await _owe_deliveries(owing, name="b", url=live.url, count=1)

            await _arrives_before_any_flood_attempt_ends(live, sessionmaker, flooders)
        finally:
            await _stop(sender)

        assert len(live.heads) == 1
        assert dead.most_open_connections <= 3  # the host's cap
