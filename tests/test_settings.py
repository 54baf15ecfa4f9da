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


def test_the_bookkeeping_timeouts_and_attempts_default_to_what_aws_answers_well_within_and_are_read():
    assert (Settings().bookkeeping_connect_timeout_s, Settings().bookkeeping_read_timeout_s,
            Settings().bookkeeping_max_attempts) == (2.0, 5.0, 3)
    settings = Settings.from_env({"FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S": "0.5",
                                  "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S": " 12.5 ",
                                  "FANFETCH_BOOKKEEPING_MAX_ATTEMPTS": "1"})
    assert (settings.bookkeeping_connect_timeout_s, settings.bookkeeping_read_timeout_s,
            settings.bookkeeping_max_attempts) == (0.5, 12.5, 1)


@pytest.mark.parametrize(("name", "raw", "says"), [
    ("FANFETCH_BOOKKEEPING_READ_TIMEOUT_S", "soon", "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S='soon' is not a number"),
    ("FANFETCH_BOOKKEEPING_READ_TIMEOUT_S", "0", "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S='0' must be at least 0.1"),
    ("FANFETCH_BOOKKEEPING_READ_TIMEOUT_S", "nan", "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S='nan' is not a finite number"),
    ("FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S", "inf", "FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S='inf' is not a finite"),
    ("FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S", "-1", "FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S='-1' must be at least"),
    ("FANFETCH_BOOKKEEPING_MAX_ATTEMPTS", "0", "FANFETCH_BOOKKEEPING_MAX_ATTEMPTS='0' must be at least 1"),
    ("FANFETCH_BOOKKEEPING_MAX_ATTEMPTS", "2.5", "FANFETCH_BOOKKEEPING_MAX_ATTEMPTS='2.5' is not an integer"),
])
def test_a_bad_bookkeeping_value_is_named_in_one_line(name, raw, says):
    with pytest.raises(InputError) as caught:
        Settings.from_env({name: raw})
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_fanfetch_worker_refuses_a_bad_bookkeeping_value_with_one_line_and_exit_2(monkeypatch, capsys):
    from fanfetch.cli.main import main

    # GIVEN `fanfetch worker` configured from the Lambda's variables, one of them malformed
    for name, value in {"QUEUE_URL": "http://127.0.0.1:1/q", "BUCKET_NAME": "b",
                        "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S": "soon"}.items():
        monkeypatch.setenv(name, value)
    # WHEN it starts / THEN it exits 2 with one line naming the variable, before touching any queue
    assert main(["worker"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S='soon' is not a number" in err[0]
