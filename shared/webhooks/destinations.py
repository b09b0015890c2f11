"""Where webhooks may go: public unicast addresses, and what operators allow-list.

A tenant's `webhook_url` is called from inside the deployment, so without a check any tenant
could make workers POST to 127.0.0.1, 10/8, the cloud metadata service (169.254.169.254), ::1,
fc00::/7 ... (server-side request forgery). The policy is checked twice:

- at submit, on the URL: its scheme, and its host if that is a literal IP address. A hostname
  is not resolved then: DNS can answer differently by the time the job ends.
- at delivery (`worker.webhook_transport`), on every address the host resolves to; the
  connection then goes to the address that was checked, so no second lookup (DNS rebinding)
  can slip another address in between.

Operators let internal receivers through with `JOBGATE_WEBHOOKS__ALLOWED_NETWORKS` (addresses
or CIDR networks) and `JOBGATE_WEBHOOKS__ALLOWED_HOSTS` (host names, trusted whatever they
resolve to).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import AnyUrl

from shared.errors import WebhookUrlRefused
from shared.settings import WebhookSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes that carry an IPv4 address a gateway may forward to (RFC 6052 NAT64, its
# local-use /48 of RFC 8215): judged by the IPv4 address inside, or refused outright.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_NOT_PUBLIC = (
    "not a public address: webhooks go to public addresses only, unless"
    " JOBGATE_WEBHOOKS__ALLOWED_NETWORKS lets it through"
)


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a public unicast address (and so is any IPv4 address inside it)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None and not is_public(embedded):
        return False
    if isinstance(address, ipaddress.IPv6Address) and (
        address.is_site_local or address in _LOCAL_NAT64
    ):
        return False
    # `is_global` alone lets multicast through (224.0.0.1 is "global"), hence the rest.
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo client, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> IPAddress | None:
    """`host` as an IP address if it is one (`[::1]` included), else None."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Which schemes, hosts and addresses webhooks may be sent to (see the module docstring)."""

    schemes: frozenset[str]
    networks: tuple[IPNetwork, ...]
    hosts: frozenset[str]

    @classmethod
    def of(cls, settings: WebhookSettings) -> DestinationPolicy:
        return cls(
            schemes=frozenset(settings.allowed_schemes),
            networks=tuple(settings.allowed_networks),
            hosts=frozenset(_host_key(host) for host in settings.allowed_hosts),
        )

    def is_allowed_host(self, host: str) -> bool:
        """Whether an operator trusts this host name whatever it resolves to."""
        return _host_key(host) in self.hosts

    def is_allowed_address(self, address: IPAddress) -> bool:
        """Whether webhooks may be sent to `address`: public, or in an allowed network."""
        return is_public(address) or any(address in network for network in self.networks)

    def addresses_refusal(self, host: str, addresses: Iterable[IPAddress]) -> str | None:
        """Why `host`, resolved to `addresses`, may not be called; None if it may."""
        if self.is_allowed_host(host):
            return None
        for address in addresses:
            if not self.is_allowed_address(address):
                if literal_address(host) is not None:
                    return f"{address} is {_NOT_PUBLIC}"
                return f"{host} resolves to {address}, {_NOT_PUBLIC}"
        return None

    def url_refusal(self, url: str) -> str | None:
        """Why a submitted `url` can never be delivered (scheme, literal IP host); None if not.

        Host names are left to delivery time, when they are resolved.
        """
        parts = urlsplit(url)
        if parts.scheme not in self.schemes:
            allowed = ", ".join(sorted(self.schemes)) or "none"
            return f"the scheme {parts.scheme!r} is not allowed for webhooks (allowed: {allowed})"
        host = parts.hostname or ""
        address = literal_address(host)
        if address is None:
            return None
        return self.addresses_refusal(host, [address])


def _host_key(host: str) -> str:
    """A host name as compared with the allow-list: lower case, no trailing dot."""
    return host.lower().rstrip(".")


def refuse_webhook_urls(
    settings: WebhookSettings, urls: Iterable[tuple[Sequence[str | int], AnyUrl | None]]
) -> None:
    """Raise `WebhookUrlRefused` naming each `(loc, url)` of a submit the policy refuses."""
    given = [(loc, str(url)) for loc, url in urls if url is not None]
    if not given:  # the common case costs no policy
        return
    policy = DestinationPolicy.of(settings)
    issues: list[dict[str, object]] = []
    for loc, url in given:
        refusal = policy.url_refusal(url)
        if refusal is not None:
            issues.append({"loc": list(loc), "msg": refusal, "type": "webhook_url_refused"})
    if not issues:
        return
    detail = f"The webhook_url is refused: {issues[0]['msg']}." if len(issues) == 1 else None
    raise WebhookUrlRefused(detail or "Webhook URLs are refused; see `errors`.", issues=issues)
