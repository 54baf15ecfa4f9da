"""The SSRF guard: non-public addresses are refused by literal, by name and after redirects, the
connection is pinned to the checked address (DNS rebinding), and blocked hosts are never contacted.

Only loopback is ever connected to: "blocked" targets are loopback canaries that must see zero
connections, and names resolve through patched resolvers.
"""

from __future__ import annotations

import io
import ipaddress
import socket

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard, is_public_address
from fanfetch.core.models import Source
from fanfetch.errors import BlockedAddressError, PermanentFetchError, RetryableFetchError
from tests.fakes import FakeClock
from tests.origin_faults import Canary, FaultOrigin, make_tls, ok, redirect

BLOCKED = [
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "::1",
    "10.1.2.3",  # RFC 1918
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "169.254.169.254",  # link-local: EC2 / Lambda instance metadata
    "169.254.170.2",  # ECS task metadata / credentials
    "fd00:ec2::254",  # EC2 IMDS over IPv6 (unique-local)
    "fe80::1",  # IPv6 link-local
    "fc00::1",
    "fec0::1",  # deprecated site-local
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "ff02::1",
    "0.0.0.0",  # unspecified
    "::",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "198.18.0.1",  # benchmarking
    "192.88.99.1",  # 6to4 relay anycast
    "192.0.0.8",  # IETF protocol assignments
    "::ffff:127.0.0.1",  # IPv4-mapped forms of blocked addresses
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # deprecated IPv4-compatible form
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2001:db8::1",  # documentation
]

PUBLIC = [
    "93.184.215.14",
    "8.8.8.8",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "64:ff9b::808:808",  # NAT64 of a public address (DNS64 in IPv6-only subnets)
    "2002:808:808::1",  # 6to4 of a public address
]

ODD_LITERALS = ["2130706433", "0177.0.0.1", "127.1", "0x7f.1", "0x7f000001", "017700000001", "0x7f.0.0.1"]


def _no_dns(*args, **kwargs):
    raise AssertionError("an IP literal must not be resolved")


def _resolver(table: dict[str, list[str]]):
    """A getaddrinfo stand-in answering from ``table``; records the names asked for."""
    calls: list[str] = []

    def resolve(host, port, *args, **kwargs):
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in table[host]
        ]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize("ip", BLOCKED)
def test_blocked_literal_is_refused_without_dns(ip):
    # GIVEN a guard with no allow-list
    guard = AddressGuard(resolver=_no_dns)
    # WHEN a URL names a non-public address literally (bracketed, as in a URL, for IPv6)
    host = f"[{ip}]" if ":" in ip else ip
    # THEN it is refused, naming the address
    with pytest.raises(BlockedAddressError, match="non-public"):
        guard.resolve(host, 80)


@pytest.mark.parametrize("ip", BLOCKED)
def test_name_resolving_to_a_blocked_address_is_refused(ip):
    # GIVEN a name whose DNS answer is a non-public address
    guard = AddressGuard(resolver=_resolver({"files.example.com": [ip]}))
    # WHEN it is checked / THEN it is refused
    with pytest.raises(BlockedAddressError) as caught:
        guard.resolve("files.example.com", 443)
    assert str(ipaddress.ip_address(ip)) in str(caught.value)


@pytest.mark.parametrize("host", ODD_LITERALS)
def test_non_canonical_numeric_hosts_are_refused(host):
    # GIVEN a numeric host that getaddrinfo would read like inet_aton (all of these are 127.0.0.1)
    guard = AddressGuard(resolver=_no_dns)
    # THEN it is refused before any lookup
    with pytest.raises(BlockedAddressError, match="non-canonical numeric host"):
        guard.resolve(host, 80)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip):
    # GIVEN a public address, literally and behind a name
    literal = AddressGuard(resolver=_no_dns)
    named = AddressGuard(resolver=_resolver({"cdn.example.com": [ip]}))
    # THEN both pass and the checked address is returned
    assert literal.resolve(f"[{ip}]" if ":" in ip else ip, 443) == [str(ipaddress.ip_address(ip))]
    assert is_public_address(ipaddress.ip_address(ip))
    assert len(named.resolve("cdn.example.com", 443)) == 1


def test_one_non_public_answer_among_public_ones_refuses_the_host():
    # GIVEN a name answering one public and one private address (round-robin poisoning)
    guard = AddressGuard(resolver=_resolver({"mixed.example.com": ["8.8.8.8", "10.0.0.7"]}))
    # THEN the host is refused: we would not know which address a connection would use
    with pytest.raises(BlockedAddressError, match="10.0.0.7"):
        guard.resolve("mixed.example.com", 80)


def test_addresses_come_back_deduplicated_in_resolver_order():
    # GIVEN a resolver repeating an address (one entry per socket type, as getaddrinfo does)
    guard = AddressGuard(resolver=_resolver({"a.example.com": ["8.8.4.4", "8.8.8.8", "8.8.4.4"]}))
    # THEN the preferred (first) address stays first and duplicates are dropped
    assert guard.resolve("a.example.com", 80) == ["8.8.4.4", "8.8.8.8"]


def test_allow_list_entry_with_port_allows_exactly_that_host_and_port():
    # GIVEN 127.0.0.1:8080 allow-listed
    guard = AddressGuard(allow_hosts=["127.0.0.1:8080"], resolver=_resolver({"local.test": ["127.0.0.1"]}))
    # THEN that address and port pass, by literal and by a name resolving to it
    assert guard.resolve("127.0.0.1", 8080) == ["127.0.0.1"]
    assert guard.resolve("local.test", 8080) == ["127.0.0.1"]
    # AND another port, or another loopback address, does not
    with pytest.raises(BlockedAddressError):
        guard.resolve("127.0.0.1", 8081)
    with pytest.raises(BlockedAddressError):
        guard.resolve("127.0.0.2", 8080)


def test_allow_list_name_entry_allows_that_name_on_any_port_only():
    # GIVEN a host name allow-listed without a port
    guard = AddressGuard(allow_hosts=["Internal.Test."], resolver=_resolver({"internal.test": ["10.0.0.5"]}))
    # THEN the name passes on any port (case and trailing dot do not matter)
    assert guard.resolve("internal.test", 80) == ["10.0.0.5"]
    assert guard.resolve("INTERNAL.test", 9000) == ["10.0.0.5"]
    # AND the address it resolves to is still refused when named directly
    with pytest.raises(BlockedAddressError):
        guard.resolve("10.0.0.5", 80)


def test_allow_list_accepts_bracketed_ipv6_with_port():
    guard = AddressGuard(allow_hosts=["[::1]:9000"], resolver=_no_dns)
    # GIVEN [::1]:9000 allow-listed / THEN ::1 on 9000 passes, on 9001 it does not
    assert guard.resolve("[::1]", 9000) == ["::1"]
    with pytest.raises(BlockedAddressError):
        guard.resolve("::1", 9001)


@pytest.mark.parametrize("entry", ["", "host:", "host:http", "host:0", "host:70000", "[::1]x", ":80"])
def test_malformed_allow_list_entries_are_rejected(entry):
    # GIVEN a typo in configuration / THEN it fails loudly, naming the entry
    with pytest.raises(ValueError, match="allow_hosts entry"):
        AddressGuard(allow_hosts=[entry])


def test_unknown_name_is_permanent_and_temporary_dns_failure_is_retryable():
    # GIVEN a name that does not exist and a resolver that times out
    def flaky(host, port, *args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    # THEN NXDOMAIN will not get better, a DNS hiccup may
    with pytest.raises(PermanentFetchError, match="not found") as caught:
        AddressGuard(resolver=_resolver({})).resolve("nope.example.com", 80)
    assert not isinstance(caught.value, BlockedAddressError)
    with pytest.raises(RetryableFetchError, match="DNS lookup"):
        AddressGuard(resolver=flaky).resolve("files.example.com", 80)


# --- over real (loopback) sockets -------------------------------------------------------------


@pytest.fixture
def canary():
    listener = Canary("127.0.0.2")
    yield listener
    listener.close()


def _fetcher(guard: AddressGuard, **settings) -> CurlFetcher:
    # Short timeouts: if the guard ever let a canary through, the test fails fast instead of hanging.
    options = {"max_attempts": 2, "connect_timeout_s": 1.0, "read_timeout_s": 1.0} | settings
    return CurlFetcher(HttpSettings(**options), clock=FakeClock(), guard=guard, rand=lambda: 0.0)


def _fetch(fetcher: CurlFetcher, url: str) -> bytes:
    dest = io.BytesIO()
    fetcher.fetch(Source(url), dest)
    return dest.getvalue()


def test_host_resolving_to_a_blocked_address_is_never_contacted(canary):
    # GIVEN a name that "resolves" to the canary's loopback address, not allow-listed
    guard = AddressGuard(resolver=_resolver({"internal.test": [canary.host]}))
    with _fetcher(guard) as fetcher:
        # WHEN it is fetched
        with pytest.raises(BlockedAddressError) as caught:
            _fetch(fetcher, f"http://internal.test:{canary.port}/secret")
    # THEN it is refused after one try (permanent) and no connection was ever made
    assert caught.value.attempts == 1
    assert caught.value.url == f"http://internal.test:{canary.port}/secret"
    assert canary.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "127.2", "0x7f.0.0.2", "[::ffff:127.0.0.2]"])
def test_blocked_literals_in_urls_are_never_contacted(canary, host):
    # GIVEN URL hosts that all mean the canary's address 127.0.0.2
    with _fetcher(AddressGuard(resolver=_no_dns)) as fetcher:
        # WHEN fetched / THEN refused, and the canary saw nothing
        with pytest.raises(BlockedAddressError):
            _fetch(fetcher, f"http://{host}:{canary.port}/")
    assert canary.connections == 0


def test_guard_is_on_by_default(fault_origin):
    # GIVEN a fetcher built without a guard argument, and an origin on loopback
    url = fault_origin.add("/data", ok(b"secret"))
    with CurlFetcher(clock=FakeClock()) as fetcher:
        # WHEN it fetches the loopback origin / THEN it is refused before any request
        with pytest.raises(BlockedAddressError):
            _fetch(fetcher, url)
    assert fault_origin.requests("/data") == 0


def _rebinding(fault_origin, monkeypatch) -> tuple[Canary, AddressGuard, list[str]]:
    """A canary on 127.0.0.2 at the origin's port, and a guard allowing only 127.0.0.1 at it whose resolver
    answers ``rebind.test`` with 127.0.0.1 once, then the canary (as the patched system resolver always does);
    the names it was asked, in order."""
    port = fault_origin.port
    canary = Canary("127.0.0.2", port)
    fault_origin.add("/data", ok(b"from the checked address"))
    answers = iter([["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host, port_, *args, **kwargs):
        calls.append(host)
        ip = next(answers, ["127.0.0.2"])[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port_))]

    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: real("127.0.0.2", *a, **k) if host == "rebind.test" else real(host, *a, **k),
    )
    return canary, AddressGuard(allow_hosts=[f"127.0.0.1:{port}"], resolver=rebinding), calls


def test_dns_rebinding_cannot_redirect_the_connection(fault_origin, monkeypatch):
    # GIVEN an allow-listed origin on 127.0.0.1:P and a canary on 127.0.0.2:P (same port)
    # AND a name whose first answer is the allowed address and every later answer the canary's
    # AND the system resolver (what a client that resolves twice would use) also answers the canary
    port = fault_origin.port
    canary, guard, calls = _rebinding(fault_origin, monkeypatch)
    try:
        with _fetcher(guard, dns_cache_s=0) as fetcher:  # every request resolves (the cache: the next test)
            # WHEN the name is fetched
            body = _fetch(fetcher, f"http://rebind.test:{port}/data")
            # THEN the bytes came from the checked address, resolved once, with the name as Host
            assert body == b"from the checked address"
            assert calls == ["rebind.test"]
            assert fault_origin.log("/data")[0].headers["host"] == f"rebind.test:{port}"
            # AND when the name now rebinds to the canary, the next fetch is refused
            with pytest.raises(BlockedAddressError):
                _fetch(fetcher, f"http://rebind.test:{port}/data")
        # AND the canary never saw a connection
        assert canary.connections == 0
        assert fault_origin.requests("/data") == 1
    finally:
        canary.close()


def test_a_host_names_verdict_is_reused_for_dns_cache_s_and_pins_every_request_to_the_checked_address(
        fault_origin, monkeypatch):
    # GIVEN the origin on 127.0.0.1:P, a canary on 127.0.0.2:P, and a name that rebinds to the canary after its
    # first answer (the system resolver answers the canary too)
    port = fault_origin.port
    canary, guard, calls = _rebinding(fault_origin, monkeypatch)
    clock = FakeClock()
    try:
        with CurlFetcher(HttpSettings(max_attempts=2, connect_timeout_s=1.0, read_timeout_s=1.0, dns_cache_s=60.0),
                         clock=clock, guard=guard, rand=lambda: 0.0) as fetcher:
            url = f"http://rebind.test:{port}/data"
            # WHEN the name is fetched twice within dns_cache_s, once through fetch and once through fetch_async
            first = _fetch(fetcher, url)
            dest = io.BytesIO()
            fetcher.fetch_async(Source(url), dest).result(timeout=60)
            # THEN DNS was asked once, and both requests went to the checked address
            assert first == dest.getvalue() == b"from the checked address"
            assert calls == ["rebind.test"]
            # AND once dns_cache_s has passed, the name is resolved again: now the canary, refused
            clock.advance(61.0)
            with pytest.raises(BlockedAddressError):
                _fetch(fetcher, url)
            assert calls == ["rebind.test", "rebind.test"]
        # AND the canary never saw a connection
        assert canary.connections == 0
        assert fault_origin.requests("/data") == 2
    finally:
        canary.close()


def test_redirect_to_a_blocked_host_is_refused_before_connecting(fault_origin, canary):
    # GIVEN an allowed origin that redirects to a name resolving to the canary
    guard = AddressGuard(
        allow_hosts=[f"127.0.0.1:{fault_origin.port}"], resolver=_resolver({"internal.test": [canary.host]})
    )
    url = fault_origin.add("/hop", redirect(f"http://internal.test:{canary.port}/latest/meta-data/"))
    with _fetcher(guard) as fetcher:
        # WHEN it is fetched
        with pytest.raises(BlockedAddressError, match="redirected to") as caught:
            _fetch(fetcher, url)
    # THEN the error names the original URL, one request was made, and the canary saw nothing
    assert caught.value.url == url
    assert caught.value.attempts == 1
    assert fault_origin.requests("/hop") == 1
    assert canary.connections == 0


def test_allow_list_port_does_not_open_other_loopback_ports(fault_origin):
    # GIVEN only the origin's port allow-listed and a canary on another port of the same address
    other = Canary("127.0.0.1")
    try:
        url = fault_origin.add("/hop", redirect(f"http://127.0.0.1:{other.port}/admin"))
        with _fetcher(AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"])) as fetcher:
            # WHEN the origin redirects there / THEN it is refused and never contacted
            with pytest.raises(BlockedAddressError):
                _fetch(fetcher, url)
        assert other.connections == 0
    finally:
        other.close()


def test_https_is_pinned_to_the_checked_address_but_verified_on_the_name(tmp_path):
    # GIVEN a TLS origin on 127.0.0.1 whose certificate names only "pinned.test", signed by a test CA
    pytest.importorskip("cryptography")
    ca_file, server_context, sni_seen = make_tls(tmp_path, "pinned.test")
    origin = FaultOrigin(tls=server_context)
    try:
        origin.add("/data", ok(b"over tls"))
        guard = AddressGuard(
            allow_hosts=[f"127.0.0.1:{origin.port}"],
            resolver=_resolver({"pinned.test": ["127.0.0.1"], "wrong.test": ["127.0.0.1"]}),
        )
        with _fetcher(guard, ca_bundle=str(ca_file)) as fetcher:
            # WHEN it is fetched by name
            body = _fetch(fetcher, f"https://pinned.test:{origin.port}/data")
            # THEN TLS verified the name (SNI sent, certificate matched) while connecting to the pin
            assert body == b"over tls"
            assert sni_seen == ["pinned.test"]
            # AND a name the certificate does not cover fails verification, permanently
            with pytest.raises(PermanentFetchError, match="TLS certificate"):
                _fetch(fetcher, f"https://wrong.test:{origin.port}/data")
    finally:
        origin.close()
