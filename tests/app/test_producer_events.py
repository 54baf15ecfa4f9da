"""The producer's URL limit follows its Lambda memory."""

from __future__ import annotations

from fanfetch.app.producer_events import producer_max_urls


def test_the_producers_limit_follows_its_memory():
    assert producer_max_urls("512") == 384_000 and producer_max_urls("10240") == 10_112_000
    assert producer_max_urls(None) is None and producer_max_urls("") is None
