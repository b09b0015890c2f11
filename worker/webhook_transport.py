"""The webhook sender's HTTP transport: resolve, check, then connect to the checked address.

Every request goes through `DestinationPolicy` (see `shared.webhook_destinations`): its host
is resolved once here, every address it resolves to must be allowed, and the request is sent
to the first of them by IP, with the original `Host` header and TLS server name (SNI and
certificate check), so the address connected to is the one checked: a DNS answer that changes
between check and connect (rebinding) never reaches the socket. Host names an operator
allow-listed are trusted whatever they resolve to and sent as they are.
"""

from __future__ import annotations

import asyncio
import socket

import httpx

from shared.webhook_destinations import DestinationPolicy, IPAddress, literal_address


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


class GuardedTransport(httpx.AsyncBaseTransport):
    """An `httpx` transport that refuses destinations the policy does not allow."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in self._policy.schemes:
            raise DestinationRefused(f"the scheme {url.scheme!r} is not allowed", request=request)
        if self._policy.is_allowed_host(url.host):
            return await self._inner.handle_async_request(request)
        literal = literal_address(url.host)
        addresses = [literal] if literal is not None else await _resolve(request)
        refusal = self._policy.addresses_refusal(url.host, addresses)
        if refusal is not None:
            raise DestinationRefused(refusal, request=request)
        if literal is not None:
            return await self._inner.handle_async_request(request)
        return await self._send_to_first_reachable(request, addresses)

    async def _send_to_first_reachable(
        self, request: httpx.Request, addresses: list[IPAddress]
    ) -> httpx.Response:
        """Try the checked addresses in the resolver's order (`localhost`: ::1, then 127.0.0.1)."""
        url, extensions = request.url, request.extensions
        for address in addresses[:-1]:
            try:
                return await self._inner.handle_async_request(_pinned(request, url, address))
            except httpx.ConnectError:  # nothing was sent: the next address may answer
                request.url, request.extensions = url, extensions
        return await self._inner.handle_async_request(_pinned(request, url, addresses[-1]))

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _resolve(request: httpx.Request) -> list[IPAddress]:
    url = request.url
    try:
        addresses = await resolve(url.host, url.port or (443 if url.scheme == "https" else 80))
    except OSError as exc:  # socket.gaierror: unknown name, no DNS answer
        raise httpx.ConnectError(f"cannot resolve {url.host}: {exc}", request=request) from exc
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {url.host}: no address", request=request)
    return addresses


def _pinned(request: httpx.Request, url: httpx.URL, address: IPAddress) -> httpx.Request:
    """`request` sent to `address`, still naming `url`'s host in `Host` and TLS (SNI, cert)."""
    # The Host header was set from the URL when the request was built, so it keeps the name.
    request.url = url.copy_with(host=str(address))
    if url.scheme == "https":
        request.extensions = {**request.extensions, "sni_hostname": url.host}
    return request
