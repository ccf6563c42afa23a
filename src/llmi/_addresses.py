"""Which IP addresses count as public for downloads: globally routable, nothing special.

The rules ``llmi.fetch`` applies to every address it might connect to (a URL's literal host,
each DNS answer, each redirect's target). IANA's special-purpose ranges are written out here
rather than taken from the ``ipaddress`` module, whose lists differ between Python versions;
an IPv4 address wrapped in IPv6 (mapped, NAT64, 6to4, Teredo) is judged by what it wraps, and
the wrappings that are never routable (IPv4-compatible, IPv4-translated, NAT64 local-use) are
refused outright.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_public_address", "not_public_because"]

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[_Net, str], ...]:
    return tuple((ipaddress.ip_network(net), label) for net, label in pairs)


# IANA's special-purpose registries, written out (the ``ipaddress`` module's own lists differ
# between Python versions). Anything here is refused, globally reachable or not.
_V4_SPECIAL = _nets(
    ("0.0.0.0/8", "this network"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "shared"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"), ("192.0.2.0/24", "documentation"),
    ("192.31.196.0/24", "AS112"), ("192.52.193.0/24", "AMT"), ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"), ("192.175.48.0/24", "AS112"), ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"), ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
)  # fmt: skip
# IPv6 forms with an IPv4 address inside, judged by that address (see _embedded)
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
# refused outright: not routable on the internet, IPv4 inside or not
_V6_SPECIAL = _nets(
    ("::/128", "unspecified"), ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"), ("::ffff:0:0:0/96", "IPv4-translated"),
    ("64:ff9b:1::/48", "NAT64 local-use"), ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix"), ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"), ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing"), ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"), ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)  # fmt: skip
_V6_GLOBAL = ipaddress.ip_network("2000::/3")  # where all global unicast space lies today
_IETF_V6 = ipaddress.ip_network("2001::/23")  # protocol assignments, Teredo aside


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> bool:
    """True for a globally routable unicast address, looking inside IPv6 wrappers of IPv4.

    >>> checks = ("93.184.216.34", "169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::7f00:1")
    >>> [is_public_address(a) for a in checks]
    [True, False, False, False]
    >>> checks = ("::7f00:1", "::ffff:0:7f00:1", "64:ff9b:1::808:808", "fec0::1")
    >>> [is_public_address(a) for a in checks]
    [False, False, False, False]
    >>> [is_public_address(a) for a in ("2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1")]
    [True, True, True]
    """
    return not_public_because(ip) is None


def not_public_because(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private, in 6to4"`` ...), or None.

    >>> not_public_because("::ffff:127.0.0.1")
    'loopback, in IPv4-mapped'
    >>> not_public_because("2001:0:4136:e378:8000:63bf:3fff:fdd2")  # Teredo client 192.0.2.45
    'documentation, in Teredo'
    """
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        return next((label for net, label in _V4_SPECIAL if ip in net), None)
    if ip.scope_id:
        return "scoped (zone id)"
    for net, label in _V6_SPECIAL:
        if ip in net:
            return label
    embedded = _embedded(ip)
    if embedded is not None:
        form, addresses = embedded
        for address in addresses:
            why = not_public_because(address)
            if why is not None:
                return f"{why}, in {form}"
        return None
    if ip not in _V6_GLOBAL:
        return "reserved"
    if ip in _IETF_V6:
        return "IETF protocol assignments"
    return None


def _embedded(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """The IPv4 addresses an IPv6 address carries, by the form that carries them."""
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED:
        return "IPv4-mapped", [low]
    if ip in _NAT64:
        return "NAT64", [low]
    if ip in _SIX_TO_FOUR:
        return "6to4", [ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)]
    if ip in _TEREDO:  # the server, and the client (stored inverted)
        server = ipaddress.IPv4Address((int(ip) >> 64) & 0xFFFFFFFF)
        return "Teredo", [server, ipaddress.IPv4Address(~int(low) & 0xFFFFFFFF)]
    return None
