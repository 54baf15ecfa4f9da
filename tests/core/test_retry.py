"""The pure retry policy: which statuses are worth another try, full-jitter backoff, Retry-After."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from fanfetch.core.retry import backoff_delay, is_retryable_status, parse_retry_after

NOW = 1_700_000_000.0  # a fixed wall-clock instant (2023-11-14T22:13:20Z)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 501, 502, 503, 504, 507, 599])
def test_transient_statuses_are_retryable(status):
    # GIVEN a status that says "not now" or "the origin's fault" / THEN a later attempt may succeed
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 405, 410, 416, 451])
def test_other_statuses_are_not_retryable(status):
    # GIVEN a status that will repeat on every attempt / THEN it is not retried
    assert not is_retryable_status(status)


def test_backoff_window_doubles_per_attempt_until_the_cap():
    # GIVEN a rand() at the top of its range
    almost_one = 0.999999
    # WHEN we ask for the delay after attempts 1..6 with base 0.5 s and cap 4 s
    delays = [backoff_delay(n, base_s=0.5, max_s=4.0, rand=lambda: almost_one) for n in range(1, 7)]
    # THEN the window doubles (0.5, 1, 2, 4) and then stays at the cap
    assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0, 4.0], rel=1e-5)


def test_backoff_is_full_jitter_within_the_window():
    # GIVEN a seeded random source
    rand = random.Random(7).random
    # WHEN many delays are drawn for attempt 3 (window 2 s)
    delays = [backoff_delay(3, base_s=0.5, max_s=60.0, rand=rand) for _ in range(2000)]
    # THEN every delay lies in [0, 2) and they spread over the whole window, not near its top only
    assert all(0.0 <= d < 2.0 for d in delays)
    assert min(delays) < 0.1 and max(delays) > 1.9


def test_backoff_with_rand_zero_is_no_wait():
    # GIVEN rand() == 0 / THEN the delay is zero (full jitter includes "retry at once")
    assert backoff_delay(5, base_s=1.0, max_s=60.0, rand=lambda: 0.0) == 0.0


def test_backoff_survives_huge_attempt_numbers():
    # GIVEN an absurd attempt number / WHEN the delay is computed / THEN no overflow, just the cap
    assert backoff_delay(10_000, base_s=0.5, max_s=60.0, rand=lambda: 0.5) == pytest.approx(30.0)


def test_backoff_rejects_attempt_zero():
    # GIVEN attempt numbers are 1-based / THEN 0 is a caller bug
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, base_s=0.5, max_s=60.0, rand=lambda: 0.5)


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("0", 0.0)])
def test_retry_after_delta_seconds(value, seconds):
    # GIVEN a delta-seconds Retry-After / THEN it is that many seconds
    assert parse_retry_after(value, now_epoch=NOW) == seconds


def test_retry_after_http_date_in_the_future():
    # GIVEN an IMF-fixdate 90 s after now
    value = formatdate(NOW + 90, usegmt=True)
    # WHEN parsed / THEN it means 90 s from now
    assert parse_retry_after(value, now_epoch=NOW) == pytest.approx(90.0)


def test_retry_after_http_date_in_the_past_means_now():
    # GIVEN a date already past / THEN no wait (never a negative one)
    assert parse_retry_after(formatdate(NOW - 3600, usegmt=True), now_epoch=NOW) == 0.0


@pytest.mark.parametrize(
    "value", ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]
)
def test_retry_after_accepts_the_three_http_date_forms(value):
    # GIVEN the IMF-fixdate, RFC 850 and asctime forms of one instant, 10 s before "now"
    now = 784111777.0 + 10
    # THEN each means "already past"
    assert parse_retry_after(value, now_epoch=now) == 0.0
    # AND each is read as the same instant
    assert parse_retry_after(value, now_epoch=784111777.0 - 5) == pytest.approx(5.0)


@pytest.mark.parametrize("value", ["", "   ", "soon", "-5", "1.5", "１２", "Mon, 99 Foo 2020 99:99:99 GMT"])
def test_unreadable_retry_after_is_none(value):
    # GIVEN a malformed header / THEN None, so the caller falls back to its own backoff
    assert parse_retry_after(value, now_epoch=NOW) is None
