"""The Lambdas' environment, read once: defaults, parsing, and every bad variable named at once."""

from __future__ import annotations

import pytest

from fanfetch.errors import InputError
from fanfetch.settings import Settings


def test_defaults_leave_optional_limits_off():
    settings = Settings.from_env({"BUCKET_NAME": "b"})
    assert settings.concurrency == 16 and settings.per_host_rps is None and settings.per_host_concurrency is None
    assert settings.allow_hosts == () and settings.ledger_table == "" and settings.event_bus_name == "default"


def test_every_variable_is_read():
    settings = Settings.from_env({
        "BUCKET_NAME": "b", "OUTPUT_PREFIX": "/runs/", "FANFETCH_CONCURRENCY": "64",
        "FANFETCH_ALLOW_HOSTS": "a.example:8080, 127.0.0.1:9", "FANFETCH_PER_HOST_CONCURRENCY": "4",
        "FANFETCH_PER_HOST_RPS": "2.5", "LEDGER_TABLE": "t", "DLQ_URL": "https://q", "FANFETCH_MAX_RECEIVE_COUNT": "7",
    })
    assert settings.concurrency == 64 and settings.output_key_prefix == "runs/"
    assert settings.allow_hosts == ("a.example:8080", "127.0.0.1:9")
    assert (settings.per_host_concurrency, settings.per_host_rps) == (4, 2.5)
    assert (settings.ledger_table, settings.dlq_url, settings.max_receive_count) == ("t", "https://q", 7)


def test_all_problems_are_named_in_one_error():
    with pytest.raises(InputError) as caught:
        Settings.from_env(
            {"FANFETCH_CONCURRENCY": "many", "FANFETCH_PER_HOST_RPS": "0", "FANFETCH_MAX_RECEIVE_COUNT": "-2"},
            require=("BUCKET_NAME",),
        )
    message = str(caught.value)
    names = ("BUCKET_NAME is not set", "FANFETCH_CONCURRENCY", "FANFETCH_PER_HOST_RPS", "FANFETCH_MAX_RECEIVE_COUNT")
    for name in names:
        assert name in message
