"""The SSRF guard: downloads reach only public addresses, checked once per hop and pinned.

``AddressGuard`` resolves a host once and refuses non-public addresses; the fetcher pins libcurl to
exactly those addresses (``CURLOPT_RESOLVE``) and re-checks the address actually dialled in its
open-socket callback, while TLS SNI, certificate checks and ``Host`` use the name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any

from fanfetch.errors import BlockedAddressError, PermanentFetchError, RetryableFetchError

__all__ = ["AddressGuard", "is_public_address", "normalise_ip"]

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges Python's ``is_global`` (3.11) lets through but no download origin lives in.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",  # CGNAT: routes to internal workloads in some VPCs
        "192.0.0.0/24",  # IETF protocol assignments (python/cpython#113171 on older patch releases)
        "192.88.99.0/24",  # 6to4 relay anycast
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "5f00::/16",  # IPv6 segment routing SIDs
        "2001:20::/28",  # ORCHIDv2
        "3fff::/20",  # documentation
        "fec0::/10",  # deprecated site-local
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64: DNS64 maps public IPv4 hosts here
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d form

# One label of a number inet_aton(3) accepts: decimal, octal (leading 0) or hex (0x...).
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def is_public_address(ip: _IP) -> bool:
    """True when ``ip`` is a globally routable unicast address, including any IPv4 address an
    IPv6 form embeds (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
    if any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version):
        return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def normalise_ip(text: str) -> str:
    """An IP address in canonical text (what ``AddressGuard.resolve`` returns); other text unchanged."""
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return text


def _normalise_host(host: str) -> str:
    """Lower-case, without brackets, zone id or trailing dot; IP literals in canonical text."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.split("%", 1)[0].rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _parse_allow_entry(entry: str) -> tuple[str, int | None]:
    text = entry.strip()
    port: str | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"allow_hosts entry {entry!r} is not host, host:port or [v6]:port")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    if not host:
        raise ValueError(f"allow_hosts entry {entry!r} has no host")
    if port is None:
        return _normalise_host(host), None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"allow_hosts entry {entry!r} has an invalid port")
    return _normalise_host(host), int(port)


class AddressGuard:
    """Resolves a host once and returns only addresses downloads may reach.

    ``allow_hosts`` entries are ``"host"`` or ``"host:port"`` (``"[::1]:8080"`` for IPv6): a URL
    whose host (and port, when given) equals an entry bypasses the non-public check, and so does
    a resolved address equal to an IP entry (so ``"127.0.0.1:8080"`` allows whatever name
    resolves to that address and port, and nothing else). ``resolver`` has the signature of
    ``socket.getaddrinfo``; tests pass a fake one.
    """

    def __init__(
        self,
        *,
        allow_hosts: Iterable[str] = (),
        resolver: Callable[..., list[Any]] = socket.getaddrinfo,
    ):
        self._allowed = frozenset(_parse_allow_entry(e) for e in allow_hosts)
        self._resolver = resolver

    def resolve(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host`` (IP text, first = preferred); raise BlockedAddressError
        if any is non-public and not allow-listed, PermanentFetchError / RetryableFetchError if
        the name does not resolve (NXDOMAIN / a temporary DNS failure)."""
        where = f"{host}:{port}"
        name = _normalise_host(host)
        if not name:
            raise BlockedAddressError(where, "URL has no host")
        addresses = self._lookup(name, port, where)
        if self._allows(name, port):
            return [str(a) for a in addresses]
        for address in addresses:
            if not self._allows(str(address), port) and not is_public_address(address):
                raise BlockedAddressError(where, f"{host} is or resolves to non-public address {address}")
        return [str(a) for a in addresses]

    def _allows(self, host: str, port: int) -> bool:
        return (host, port) in self._allowed or (host, None) in self._allowed

    def _lookup(self, name: str, port: int, where: str) -> list[_IP]:
        try:
            return [ipaddress.ip_address(name)]
        except ValueError:
            pass
        if all(_NUMERIC_LABEL.match(label) for label in name.split(".")):
            # "2130706433", "0177.0.0.1", "127.1", "0x7f.1": getaddrinfo treats these as inet_aton
            # would (all mean 127.0.0.1). No real host name is all-numeric, so refuse outright.
            raise BlockedAddressError(where, f"non-canonical numeric host {name!r}")
        try:
            infos = self._resolver(name, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                raise PermanentFetchError(where, f"host {name!r} not found") from None
            raise RetryableFetchError(where, f"DNS lookup of {name!r} failed: {exc}") from None
        except OSError as exc:
            raise RetryableFetchError(where, f"DNS lookup of {name!r} failed: {exc}") from None
        addresses: list[_IP] = []
        for info in infos:
            family, sockaddr = info[0], info[4]
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise RetryableFetchError(where, f"{name!r} resolved to no IP address")
        return addresses
