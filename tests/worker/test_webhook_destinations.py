"""Webhook destinations checked at delivery: the host is resolved, every address checked, and
the connection made to the checked address.

Receivers are real HTTP servers on loopback addresses (no allow-list: refused; allow-listed:
reached); a public address is only ever answered by respx, after the check ran for real.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx
import trustme
from arq.worker import Worker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import WebhookDelivery
from shared.settings import Settings, WebhookSettings
from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit
from tests.polling import poll_job
from worker.webhook_sender import http_client
from worker.webhook_transport import DestinationRefused

PUBLIC_HOOK = "https://93.184.215.14/jobgate"
LOOPBACK = ["127.0.0.0/8", "::1"]  # `localhost` may resolve to ::1 as well, tried first


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server that records each request's head and answers `status`."""

    host: str
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    heads: list[bytes] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        answer = (
            f"HTTP/1.1 {self.status} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        writer.write(answer.encode())
        await writer.drain()
        writer.close()

    def header(self, name: str) -> str:
        for line in self.heads[-1].decode().split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        raise KeyError(name)


@dataclass
class TlsReceiver:
    """An HTTPS/1.1 server holding a certificate for `name` only, keeping connections alive.

    It records the server name of every TLS handshake (SNI) and the `Host` of every request.
    """

    name: str
    ca: trustme.CA = field(default_factory=trustme.CA)
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    port: int = 0

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(self.name).configure_cert(context)
        context.sni_callback = lambda _obj, name, _ctx: self.server_names.append(name)
        return context

    def client_context(self) -> ssl.SSLContext:
        """What the sender verifies with: the system's defaults, trusting this test CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                fields = dict(
                    line.split(":", 1) for line in head.decode().split("\r\n")[1:] if ":" in line
                )
                fields = {key.lower(): value.strip() for key, value in fields.items()}
                await reader.readexactly(int(fields.get("content-length", "0")))
                self.hosts.append(fields["host"])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client closed the connection
        finally:
            writer.close()


async def _start(receiver: Receiver, servers: list[asyncio.Server]) -> Receiver:
    server = await asyncio.start_server(receiver.serve, receiver.host, receiver.port)
    receiver.port = server.sockets[0].getsockname()[1]
    servers.append(server)
    return receiver


@pytest.fixture
async def servers() -> AsyncIterator[list[asyncio.Server]]:
    running: list[asyncio.Server] = []
    yield running
    for server in running:
        server.close()
        await server.wait_closed()


def _fast(**destinations: Any) -> WebhookSettings:
    return WebhookSettings(
        timeout_seconds=2,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.05,
        poll_interval_seconds=0.02,
        max_attempts=3,
        **destinations,
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fast retries; destinations as in production: public addresses only."""
    return settings.model_copy(update={"webhooks": _fast()})


async def _settled(client: httpx.AsyncClient, token: str, job_id: str) -> dict[str, Any]:
    """The job's (one) delivery once it is no longer pending."""

    def settled(job: dict[str, Any]) -> bool:
        deliveries = (job["webhook"] or {}).get("deliveries", [])
        return bool(deliveries) and deliveries[0]["status"] != "pending"

    job = await poll_job(client, token, job_id, settled, timeout=10)
    delivery: dict[str, Any] = job["webhook"]["deliveries"][0]
    return delivery


async def _last_error(sessionmaker: async_sessionmaker[AsyncSession], delivery_id: str) -> str:
    async with sessionmaker() as session:
        error = await session.scalar(
            select(WebhookDelivery.last_error).where(WebhookDelivery.id == uuid.UUID(delivery_id))
        )
    assert error is not None
    return error


class TestDelivery:
    async def test_a_name_resolving_to_loopback_is_refused_once_for_good(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        servers: list[asyncio.Server],
        worker: Worker,
    ) -> None:
        receiver = await _start(Receiver("127.0.0.1"), servers)
        _, token = await make_tenant(sessionmaker)
        url = f"http://localhost:{receiver.port}/hook"
        job = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": url})

        delivery = await _settled(client, token, job["id"])

        assert delivery["status"] == "failed"
        assert delivery["attempts"] == 1  # not retried: no later attempt could do better
        assert delivery["last_status_code"] is None
        assert receiver.heads == []
        error = await _last_error(sessionmaker, delivery["id"])
        assert error.startswith("destination refused: localhost resolves to ")
        assert "not a public address" in error

    async def test_an_allow_listed_network_is_reached_by_name(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        servers: list[asyncio.Server],
        start_worker: WorkerFactory,
    ) -> None:
        allowed = _fast(allowed_networks=LOOPBACK)
        await start_worker(settings=settings.model_copy(update={"webhooks": allowed}))
        receiver = await _start(Receiver("127.0.0.1"), servers)
        _, token = await make_tenant(sessionmaker)
        url = f"http://localhost:{receiver.port}/hook"
        job = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": url})

        delivery = await _settled(client, token, job["id"])

        assert delivery["status"] == "delivered"
        assert len(receiver.heads) == 1
        assert receiver.heads[0].startswith(b"POST /hook HTTP/1.1\r\n")
        # Connected to the checked address, the receiver still sees the name it was given.
        assert receiver.header("Host") == f"localhost:{receiver.port}"

    async def test_an_allow_listed_host_is_reached_whatever_it_resolves_to(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        servers: list[asyncio.Server],
        start_worker: WorkerFactory,
    ) -> None:
        allowed = _fast(allowed_hosts=["localhost"])
        await start_worker(settings=settings.model_copy(update={"webhooks": allowed}))
        receiver = await _start(Receiver("127.0.0.1"), servers)
        _, token = await make_tenant(sessionmaker)
        url = f"http://localhost:{receiver.port}/hook"
        job = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": url})

        assert (await _settled(client, token, job["id"]))["status"] == "delivered"
        assert len(receiver.heads) == 1

    async def test_a_redirect_to_a_refused_address_is_not_followed(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        servers: list[asyncio.Server],
        start_worker: WorkerFactory,
    ) -> None:
        """127.0.0.1 is allowed, 127.0.0.2 (where the redirect points) is not."""
        allowed = _fast(allowed_networks=["127.0.0.1/32", "::1"])
        await start_worker(settings=settings.model_copy(update={"webhooks": allowed}))
        target = await _start(Receiver("127.0.0.2"), servers)
        redirect = Receiver("127.0.0.1", status=307)
        redirect.headers["Location"] = f"http://127.0.0.2:{target.port}/internal"
        await _start(redirect, servers)
        _, token = await make_tenant(sessionmaker)
        url = f"http://localhost:{redirect.port}/hook"  # a literal 127.0.0.1 is refused at submit
        job = await submit(client, token, "echo", {"message": "hi"}, {"webhook_url": url})

        delivery = await _settled(client, token, job["id"])

        assert delivery["status"] == "failed"
        assert delivery["last_status_code"] == 307
        assert len(redirect.heads) == 3  # max_attempts, each answered with the redirect
        assert target.heads == []
        error = await _last_error(sessionmaker, delivery["id"])
        assert error == "HTTP 307 (redirects are not followed)"

    async def test_a_public_address_is_delivered(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        """respx answers in place of the internet; the address check before it runs for real."""
        with respx.mock(assert_all_called=False) as internet:
            route = internet.post(PUBLIC_HOOK).respond(204)
            _, token = await make_tenant(sessionmaker)
            job = await submit(
                client, token, "echo", {"message": "hi"}, {"webhook_url": PUBLIC_HOOK}
            )

            delivery = await _settled(client, token, job["id"])

        assert delivery["status"] == "delivered"
        assert route.call_count == 1


class TestClient:
    """The sender's HTTP client itself, against local servers."""

    async def test_a_refused_destination_never_gets_a_connection(
        self, servers: list[asyncio.Server]
    ) -> None:
        receiver = await _start(Receiver("127.0.0.1"), servers)
        async with http_client(_fast()) as http:
            for url in (
                f"http://localhost:{receiver.port}/",
                f"http://127.0.0.1:{receiver.port}/",
                f"http://[::ffff:127.0.0.1]:{receiver.port}/",
            ):
                with pytest.raises(DestinationRefused, match="not a public address"):
                    await http.post(url, content=b"{}")
        assert receiver.heads == []

    async def test_https_names_the_host_in_tls_while_connecting_to_the_address(
        self, servers: list[asyncio.Server]
    ) -> None:
        """The TLS ClientHello carries the name (SNI), so the certificate is checked for it."""
        hellos: list[bytes] = []

        async def record_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hellos.append(await reader.read(4096))
            writer.close()

        server = await asyncio.start_server(record_hello, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        async with http_client(_fast(allowed_networks=LOOPBACK)) as http:
            with pytest.raises(httpx.ConnectError):  # the handshake is cut off: no certificate
                await http.post(f"https://localhost:{port}/", content=b"{}")
        (hello,) = hellos
        assert hello[:1] == b"\x16"  # a TLS handshake record
        assert b"localhost" in hello

    @pytest.mark.parametrize("first", [None, "a.test"], ids=["fresh", "after-a.test"])
    async def test_every_request_verifies_the_certificate_for_its_own_host(
        self,
        servers: list[asyncio.Server],
        monkeypatch: pytest.MonkeyPatch,
        first: str | None,
    ) -> None:
        """`a.test` and `b.test` resolve to one address whose certificate names `a.test` only.

        A connection verified for `a.test` must never carry a request for `b.test`, whatever
        was sent before on the same client: connections are pooled by host name, not address.
        """
        receiver = TlsReceiver("a.test")
        server = await asyncio.start_server(
            receiver.serve, "127.0.0.1", 0, ssl=receiver.server_context()
        )
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        real_getaddrinfo = socket.getaddrinfo

        def both_on_loopback(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host in ("a.test", "b.test"):
                host = "127.0.0.1"
            return real_getaddrinfo(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", both_on_loopback)
        policy = _fast(allowed_networks=LOOPBACK)
        async with http_client(policy, ssl_context=receiver.client_context()) as http:
            if first is not None:
                response = await http.post(f"https://{first}:{port}/hook", content=b"{}")
                assert response.status_code == 200
                assert receiver.hosts == [f"a.test:{port}"]
                assert receiver.server_names == ["a.test"]
            for _ in range(2):  # the second time after a failed handshake, too
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await http.post(f"https://b.test:{port}/hook", content=b"{}")
            response = await http.post(f"https://a.test:{port}/hook", content=b"{}")

        assert response.status_code == 200
        assert receiver.hosts == [f"a.test:{port}"] * (2 if first else 1)  # never b.test
        # b.test had a handshake of its own each time; a.test's connection was kept for a.test.
        handshakes = ["b.test", "b.test"]
        assert receiver.server_names == (
            ["a.test", *handshakes] if first else [*handshakes, "a.test"]
        )

    async def test_the_connection_goes_to_the_address_checked_not_a_rebound_one(
        self, servers: list[asyncio.Server], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DNS rebinding: the name answers an allowed address, then a refused one.

        Only the system resolver is faked; if anything looked the name up a second time to
        connect, the refused address's server would get the request.
        """
        allowed = await _start(Receiver("127.0.0.2"), servers)
        refused = await _start(Receiver("127.0.0.1", port=allowed.port), servers)
        answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])
        real_getaddrinfo = socket.getaddrinfo

        def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "rebinding.test":
                host = next(answers)
            return real_getaddrinfo(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        async with http_client(_fast(allowed_networks=["127.0.0.2/32"])) as http:
            response = await http.post(f"http://rebinding.test:{allowed.port}/hook", content=b"{}")

        assert response.status_code == 204
        assert refused.heads == []
        assert len(allowed.heads) == 1
        assert allowed.header("Host") == f"rebinding.test:{allowed.port}"
