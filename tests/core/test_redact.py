"""fanfetch.core.redact: userinfo and signature/token query values never survive, everything else does."""

from __future__ import annotations

import pytest

from fanfetch.core import redact
from fanfetch.core.redact import (
    configure_secret_params,
    parse_secret_params,
    redact_text,
    redact_url,
    secret_params,
)
from fanfetch.errors import FetchError, ManifestError, PermanentFetchError

PRESIGNED = ("https://b.s3.amazonaws.com/k.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIASECRET%2F2026"
             "&X-Amz-Date=20261203T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
             "&X-Amz-Security-Token=SECRETTOKEN&X-Amz-Signature=SECRETSIG")


@pytest.fixture(autouse=True)
def _defaults():
    yield
    configure_secret_params(())


def test_a_presigned_s3_url_keeps_everything_but_its_secrets():
    redacted = redact_url(PRESIGNED)
    assert "SECRET" not in redacted
    assert "X-Amz-Signature=REDACTED" in redacted and "X-Amz-Credential=REDACTED" in redacted
    assert "X-Amz-Expires=3600" in redacted and redacted.startswith("https://b.s3.amazonaws.com/k.csv?")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:SECRETPW@h.example/a.csv", "https://REDACTED@h.example/a.csv"),
        ("https://SECRETTOKEN@h.example:8443/a", "https://REDACTED@h.example:8443/a"),
        ("https://h.example/a?sig=SECRET&sv=2020&Signature=SECRET2", "https://h.example/a?sig=REDACTED&sv=2020&Signature=REDACTED"),
        ("https://h.example/a?TOKEN=SECRET&access_token=SECRET2", "https://h.example/a?TOKEN=REDACTED&access_token=REDACTED"),
        ("https://h.example/a?x-amz%2Dsignature=SECRET", "https://h.example/a?x-amz%2Dsignature=REDACTED"),
        ("https://h.example/a#access_token=SECRET&state=1", "https://h.example/a#access_token=REDACTED&state=1"),
        ("https://h.example/bulk?stationID=1&Year=2020", "https://h.example/bulk?stationID=1&Year=2020"),
        ("https://[::1/a?sig=SECRET", "https://[::1/a?sig=REDACTED"),  # unparsable: the query is still cut
    ],
)
def test_userinfo_and_secret_parameters_are_redacted(url, expected):
    assert redact_url(url) == expected


def test_urls_inside_text_are_redacted_whatever_their_scheme():
    text = "redirected to https://a:SECRET@h.example/x?token=SECRET2: HTTP 404; also ftp://u:SECRET3@f.example/"
    redacted = redact_text(text)
    assert "SECRET" not in redacted and redacted.startswith("redirected to https://REDACTED@h.example/x?token=")


def test_the_configurable_list_adds_names_case_insensitively():
    assert "api_key" not in secret_params()
    configure_secret_params(parse_secret_params(" API_KEY, X-Goog-Signature ,"))
    assert redact_url("https://h.example/a?api_key=SECRET&x-goog-signature=S2&q=1") == \
        "https://h.example/a?api_key=REDACTED&x-goog-signature=REDACTED&q=1"
    assert redact_url(PRESIGNED).count("REDACTED") == 3  # the defaults stay


def test_errors_carry_and_print_only_redacted_urls():
    error = PermanentFetchError("https://u:SECRETPW@h.example/a?sig=SECRET", "redirect to ftp://x:SECRET@y/ refused")
    assert "SECRET" not in error.url and "SECRET" not in error.reason and "SECRET" not in str(error)
    assert "SECRET" not in str(error.with_attempts(3)) and isinstance(error, FetchError)
    manifest = ManifestError("m.jsonl", "URL scheme must be http or https: ftp://u:SECRET@h/", line=3, field="url")
    assert "SECRET" not in str(manifest) and "m.jsonl:3: url:" in str(manifest)


@pytest.mark.parametrize("url", [
    "https://h.example/a/b.csv",
    "https://h.example/a?station=1&year=1900",
    "https://h.example/a?x=1#frag",
    "https://u:p@h.example/a?station=1",
    "https://h.example/a?token=abc&x=1",
    "https://h.example/a?x=1#access_token=abc",
    "https://h.example/a#x?sig=1",
    "https://h.example/a?to\tken=abc",
    "https://h.example/a?%74oken=abc",
    "https://h.example/a?Token+=abc",
    "http://[::1/a?token=abc",
    "https://h.example/a?a=1&&=2&token",
])
def test_the_quick_path_agrees_with_parsing_every_url(url):
    # GIVEN a URL with or without anything secret in it
    # WHEN it is redacted THEN the answer is the one the full parse gives (the quick path only skips work)
    assert redact_url(url) == redact._redact_parsed(url)
