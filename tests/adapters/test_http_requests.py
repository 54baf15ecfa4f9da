"""What every request carries now that requests are prepared without a ``requests.Session``:
our headers, URL credentials as Basic auth, and never a cookie an origin tried to leave behind."""

from __future__ import annotations

import base64
import io

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.models import Source
from tests.fakes import FakeClock
from tests.origin_faults import ok


def _fetcher(origin) -> CurlFetcher:
    return CurlFetcher(
        HttpSettings(), clock=FakeClock(), guard=AddressGuard(allow_hosts=[f"127.0.0.1:{origin.port}"])
    )


def test_cookies_set_by_an_origin_are_never_sent_back(fault_origin):
    # GIVEN an origin that sets a cookie on one file
    first = fault_origin.add("/a", ok(b"a", {"Set-Cookie": "session=secret; Path=/"}))
    second = fault_origin.add("/b", ok(b"b"))
    with _fetcher(fault_origin) as fetcher:
        # WHEN two files are fetched, one after the other, through one fetcher
        fetcher.fetch(Source(first), io.BytesIO())
        fetcher.fetch(Source(second), io.BytesIO())
    # THEN the second request carries no cookie, and both carry our User-Agent and encodings
    sent = fault_origin.log("/b")[0].headers
    assert "cookie" not in sent
    assert sent["user-agent"].startswith("fanfetch/") and sent["accept-encoding"] == "gzip, deflate"


def test_credentials_in_the_url_become_basic_auth(fault_origin):
    # GIVEN a URL with user:password
    fault_origin.add("/private", ok(b"p"))
    url = f"http://user:pa%20ss@127.0.0.1:{fault_origin.port}/private"
    with _fetcher(fault_origin) as fetcher:
        dest = io.BytesIO()
        fetcher.fetch(Source(url), dest)
    # THEN the origin got them as an Authorization header
    expected = "Basic " + base64.b64encode(b"user:pa ss").decode()
    assert dest.getvalue() == b"p" and fault_origin.log("/private")[0].headers["authorization"] == expected
