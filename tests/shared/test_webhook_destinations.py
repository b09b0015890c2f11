"""Which addresses webhooks may reach: public unicast ones, plus what operators allow-list."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import TypeAdapter

from shared.jobs.submit import WebhookUrl
from shared.settings import Settings, WebhookSettings
from shared.webhooks.destinations import DestinationPolicy, is_public

REFUSED = [
    "127.0.0.1",  # loopback
    "127.8.9.10",
    "0.0.0.0",  # unspecified  # noqa: S104 (an address to refuse, nothing binds it)
    "10.1.2.3",  # RFC 1918
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # link-local: cloud metadata services
    "100.64.0.1",  # carrier-grade NAT
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "224.0.0.1",  # multicast, which `is_global` alone lets through
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::1",
    "::",
    "fc00::1",  # unique local
    "fd12:3456::1",
    "fe80::1",  # link-local
    "fec0::1",  # site-local (deprecated), "global" to `ipaddress`
    "ff02::1",  # multicast
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1, "global" to `ipaddress`
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "2001:db8::1",  # documentation
]
PUBLIC = ["8.8.8.8", "93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_that_are_not_public_unicast_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    policy = DestinationPolicy.of(WebhookSettings())
    refusal = policy.addresses_refusal(address, [ipaddress.ip_address(address)])
    assert refusal is not None and "not a public address" in refusal


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
    policy = DestinationPolicy.of(WebhookSettings())
    assert policy.addresses_refusal(address, [ipaddress.ip_address(address)]) is None


def test_one_refused_address_among_the_resolved_ones_refuses_the_host() -> None:
    policy = DestinationPolicy.of(WebhookSettings())
    resolved = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.7")]
    refusal = policy.addresses_refusal("hooks.example.com", resolved)
    assert refusal is not None
    assert refusal.startswith("hooks.example.com resolves to 10.0.0.7, not a public address")


def test_allowed_networks_and_hosts_let_internal_receivers_through() -> None:
    policy = DestinationPolicy.of(
        WebhookSettings(allowed_networks=["10.1.2.0/24", "::1"], allowed_hosts=["Hooks.Internal."])
    )
    assert policy.addresses_refusal("a", [ipaddress.ip_address("10.1.2.99")]) is None
    assert policy.addresses_refusal("a", [ipaddress.ip_address("::1")]) is None
    assert policy.addresses_refusal("a", [ipaddress.ip_address("10.1.3.1")]) is not None
    assert policy.addresses_refusal("a", [ipaddress.ip_address("127.0.0.1")]) is not None
    loopback = [ipaddress.ip_address("127.0.0.1")]
    assert policy.addresses_refusal("hooks.internal", loopback) is None
    assert policy.addresses_refusal("other.internal", loopback) is not None


class TestUrlRefusal:
    """At submit only the scheme and a literal IP host can be judged: names resolve later."""

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/hook",
            "https://169.254.169.254/latest/meta-data/",
            "http://[::1]/x",
            "http://[fd00::1]:9000/x",
            "http://0x7f000001/x",  # WHATWG URL parsing makes this 127.0.0.1, as pydantic does
        ],
    )
    def test_a_literal_private_address_is_refused(self, url: str) -> None:
        normalised = str(TypeAdapter(WebhookUrl).validate_python(url))
        refusal = DestinationPolicy.of(WebhookSettings()).url_refusal(normalised)
        assert refusal is not None and "not a public address" in refusal

    @pytest.mark.parametrize(
        "url", ["https://hooks.example.com/x", "http://localhost:8080/x", "https://8.8.8.8/x"]
    )
    def test_host_names_and_public_addresses_pass(self, url: str) -> None:
        assert DestinationPolicy.of(WebhookSettings()).url_refusal(url) is None

    def test_schemes_can_be_narrowed_to_https(self) -> None:
        policy = DestinationPolicy.of(WebhookSettings(allowed_schemes=["https"]))
        refusal = policy.url_refusal("http://hooks.example.com/x")
        assert refusal is not None and "'http' is not allowed" in refusal
        assert policy.url_refusal("https://hooks.example.com/x") is None


def test_settings_read_comma_separated_lists_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBGATE_WEBHOOKS__ALLOWED_NETWORKS", "10.0.0.0/8, fd00::1")
    monkeypatch.setenv("JOBGATE_WEBHOOKS__ALLOWED_HOSTS", "hooks.internal")
    monkeypatch.setenv("JOBGATE_WEBHOOKS__ALLOWED_SCHEMES", "https")
    webhooks = Settings(_env_file=None).webhooks
    assert webhooks.allowed_networks == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::1/128"),
    ]
    assert webhooks.allowed_hosts == ["hooks.internal"]
    assert webhooks.allowed_schemes == ["https"]


def test_by_default_nothing_but_public_addresses_is_allowed() -> None:
    webhooks = WebhookSettings()
    assert webhooks.allowed_networks == [] and webhooks.allowed_hosts == []
    assert webhooks.allowed_schemes == ["https", "http"]
