"""The webhook sender's HTTP transport: resolve, check, then connect to the checked address.

Every connection goes through `DestinationPolicy` (see `shared.webhooks.destinations`) in the
network layer (`GuardedBackend`, httpcore's hook for opening sockets): the host is resolved
once there, every address it resolves to must be allowed, and the socket is opened to one of
the addresses checked, so a DNS answer that changes between check and connect (rebinding)
never reaches the socket. The request itself keeps its URL: connections are pooled by host
name and TLS names that host (SNI, certificate check) on every connection, so a connection
verified for one name never carries a request for another name on the same address. Host names
an operator allow-listed are trusted whatever they resolve to.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable

import httpcore
import httpx

from shared.webhooks.destinations import DestinationPolicy, IPAddress, literal_address

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's own defaults."""


class DestinationRefused(httpx.TransportError):
    """The webhook's host is, or resolves to, an address webhooks may not reach."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` resolves to for a TCP connection, in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = literal_address(str(sockaddr[0]).partition("%")[0])  # drop an IPv6 zone id
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the policy allows, the ones it checked."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._policy.is_allowed_host(host):
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        literal = literal_address(host)
        addresses = [literal] if literal is not None else await _resolve(host, port, timeout)
        refusal = self._policy.addresses_refusal(host, addresses)
        if refusal is not None:
            raise DestinationRefused(refusal)
        # The checked addresses in the resolver's order (`localhost`: ::1, then 127.0.0.1).
        for address in addresses[:-1]:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError:  # nothing was sent: the next address may answer
                continue
        last = str(addresses[-1])
        return await self._inner.connect_tcp(last, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("webhooks are never sent over a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, limit_seconds: float | None) -> list[IPAddress]:
    try:
        async with asyncio.timeout(limit_seconds):
            addresses = await resolve(host, port)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"cannot resolve {host}: timed out") from exc
    except OSError as exc:  # socket.gaierror: unknown name, no DNS answer
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise httpcore.ConnectError(f"cannot resolve {host}: no address")
    return addresses


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An `httpx` transport that connects only where the policy allows (see `GuardedBackend`).

    `ssl_context`: the certificate authorities trusted (tests); by default httpx's (certifi,
    or `SSL_CERT_FILE` / `SSL_CERT_DIR`). `limits` bound the pool's connections.
    """

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(limits=limits)
        self._policy = policy
        # httpx takes no network backend, so the pool it built is replaced by one alike that
        # opens its sockets through the guard; httpx's request and error mapping stay in use.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=ssl_context or True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in self._policy.schemes:
            raise DestinationRefused(f"the scheme {url.scheme!r} is not allowed", request=request)
        # A refused literal address fails before it waits for a connection from the pool (the
        # backend checks it again, with every name it resolves, where it connects).
        literal = literal_address(url.host)
        refusal = None if literal is None else self._policy.addresses_refusal(url.host, [literal])
        if refusal is not None:
            raise DestinationRefused(refusal, request=request)
        return await super().handle_async_request(request)
