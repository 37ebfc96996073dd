"""addurl's address check: only globally routable addresses are fetched from by default."""

from __future__ import annotations

import pytest

from altmount.web.addurl import forbidden_reason

REFUSED = {
    "127.0.0.1": "loopback",
    "10.1.2.3": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "shared (not globally routable)",
    "100.127.255.254": "shared (not globally routable)",
    "198.18.0.1": "private",
    "192.0.0.8": "IETF protocol",
    "192.88.99.1": "6to4 relay",
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "::1": "loopback",
    "fd00::1": "private",
    "fe80::1": "link-local",
    "2002:c000:204::1": "6to4",
    "2002:808:808::1": "6to4",
    "2001:0:4136:e378::1": "private",
    "64:ff9b::808:808": "reserved",
    "64:ff9b:1::1": "reserved",
    "::ffff:100.64.0.1": "shared (not globally routable)",
    "::ffff:192.168.1.1": "private",
}
ALLOWED = ("8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8")


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_non_global_addresses_are_refused(address):
    """Each non-global address (CGNAT, 6to4, NAT64, mapped private ones) is refused by name."""
    assert forbidden_reason(address) == REFUSED[address]


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_are_allowed(address):
    """Globally routable addresses, IPv4-mapped ones included, pass."""
    assert forbidden_reason(address) is None
