"""Conditional requests for incremental runs (issue 5 point 5): the validators of the last run go
out as If-None-Match / If-Modified-Since, and a 304 means "unchanged": nothing written, 0 bytes."""

from __future__ import annotations

import io

import pytest

from fanfetch.adapters.curl_fetcher import CurlFetcher, HttpSettings
from fanfetch.adapters.guard import AddressGuard
from fanfetch.core.ledger import Validator
from fanfetch.core.models import Source
from fanfetch.errors import PermanentFetchError
from tests.fakes import FakeClock
from tests.origin_faults import ranged, status

BODY = b"station,year\n1,2024\n"
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.fixture
def fetcher(fault_origin):
    made = CurlFetcher(
        HttpSettings(max_attempts=2),
        clock=FakeClock(),
        guard=AddressGuard(allow_hosts=[f"127.0.0.1:{fault_origin.port}"]),
    )
    yield made
    made.close()


def test_an_unchanged_file_answers_304_and_dest_is_left_alone(fault_origin, fetcher):
    # GIVEN last run saw ETag "v1", and the file has not changed
    url = fault_origin.add("/f.csv", ranged(BODY, etag='"v1"'))
    dest = io.BytesIO(b"untouched")
    # WHEN fetched with that validator
    result = fetcher.fetch(Source(url), dest, validator=Validator(url, etag='"v1"', last_modified=LAST_MODIFIED))
    # THEN not modified, 0 bytes, dest as it was, validators carried over
    assert result.not_modified and result.bytes == 0 and result.attempts == 1
    assert dest.getvalue() == b"untouched"
    assert (result.etag, result.last_modified) == ('"v1"', LAST_MODIFIED)
    # AND the request carried both conditions
    sent = fault_origin.log("/f.csv")[0].headers
    assert (sent["if-none-match"], sent["if-modified-since"]) == ('"v1"', LAST_MODIFIED)


def test_last_modified_alone_is_sent_as_if_modified_since(fault_origin, fetcher):
    url = fault_origin.add("/f.csv", ranged(BODY, etag=None))
    # GIVEN only a Last-Modified from last time / WHEN fetched / THEN If-Modified-Since → 304
    result = fetcher.fetch(Source(url), io.BytesIO(), validator=Validator(url, last_modified=LAST_MODIFIED))
    assert result.not_modified
    assert "if-none-match" not in fault_origin.log("/f.csv")[0].headers


def test_a_changed_file_is_downloaded_with_its_new_validators(fault_origin, fetcher):
    # GIVEN the file's ETag moved on since last run
    url = fault_origin.add("/f.csv", ranged(BODY, etag='"v2"'))
    dest = io.BytesIO()
    # WHEN fetched with the old validator / THEN the new body and ETag come back
    result = fetcher.fetch(Source(url), dest, validator=Validator(url, etag='"v1"'))
    assert not result.not_modified and dest.getvalue() == BODY and result.etag == '"v2"'


def test_another_urls_validator_is_not_used(fault_origin, fetcher):
    url = fault_origin.add("/f.csv", ranged(BODY, etag='"v1"'))
    # GIVEN a validator recorded for a different URL / WHEN fetched / THEN an unconditional request
    result = fetcher.fetch(Source(url), io.BytesIO(), validator=Validator(url + "?old", etag='"v1"'))
    assert not result.not_modified
    assert "if-none-match" not in fault_origin.log("/f.csv")[0].headers


def test_a_304_to_an_unconditional_request_is_still_an_error(fault_origin, fetcher):
    url = fault_origin.add("/odd", status(304))
    # GIVEN no validator was sent / WHEN the origin answers 304 anyway / THEN permanent, not "unchanged"
    with pytest.raises(PermanentFetchError):
        fetcher.fetch(Source(url), io.BytesIO())
