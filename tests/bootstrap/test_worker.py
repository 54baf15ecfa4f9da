"""The worker Lambda's composition: bookkeeping clients short and guarded by the invocation's time left, their
timeouts and attempts from the environment, and a reserve that cannot hold one attempt refused."""

from __future__ import annotations

import pytest

from fanfetch.bootstrap.worker import build_worker_app
from fanfetch.errors import InputError


def _settings(client) -> tuple[str, int, float, float]:
    config = client.meta.config
    return (config.retries["mode"], config.retries["total_max_attempts"], config.connect_timeout,
            config.read_timeout)


def test_the_workers_bookkeeping_clients_are_short_and_the_dead_letter_path_makes_one_attempt(aws_env):
    # GIVEN the worker composed from its environment
    app = build_worker_app({"BUCKET_NAME": "b", "LEDGER_TABLE": "t", "DLQ_URL": "https://sqs.example/q"})
    # THEN the ledger, events and results store retry (3 attempts, 2 s connect, 5 s read), the DLQ and failure
    # records make one attempt; the outputs' store keeps the general client; the handler has a deadline to set
    assert _settings(app.book.ledger._client) == ("standard", 3, 2.0, 5.0)
    assert _settings(app.book.events._client) == ("standard", 3, 2.0, 5.0)
    assert _settings(app.book.store._client) == ("standard", 3, 2.0, 5.0)
    assert _settings(app.dead_letters._client) == ("standard", 1, 2.0, 5.0)
    assert _settings(app.failure_store._client) == ("standard", 1, 2.0, 5.0)
    assert _settings(app.ctx.store._client) == ("standard", 3, 5.0, 30.0)
    assert app.call_deadline is not None and app.call_deadline.time_left_s() is None


def test_the_bookkeeping_timeouts_and_attempts_come_from_the_environment_for_every_bookkeeping_client(aws_env):
    # GIVEN a worker whose bookkeeping talks to a slow emulator: longer timeouts, 2 attempts, a reserve that holds
    # an attempt (5 + 20 s + the 1 s + 5 s pause after attempt 1 = 31 s)
    app = build_worker_app({"BUCKET_NAME": "b", "LEDGER_TABLE": "t", "DLQ_URL": "https://sqs.example/q",
                            "FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S": "5", "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S": "20",
                            "FANFETCH_BOOKKEEPING_MAX_ATTEMPTS": "2", "FANFETCH_DEADLINE_RESERVE_S": "31"})
    # THEN every bookkeeping client has them (the dead-letter path still one attempt); the outputs' store does not
    for client in (app.book.ledger._client, app.book.events._client, app.book.store._client):
        assert _settings(client) == ("standard", 2, 5.0, 20.0)
    assert _settings(app.dead_letters._client) == _settings(app.failure_store._client) == ("standard", 1, 5.0, 20.0)
    assert _settings(app.ctx.store._client) == ("standard", 3, 5.0, 30.0)


def test_a_reserve_that_cannot_hold_one_bookkeeping_attempt_is_refused_naming_both_sides(aws_env):
    # GIVEN the same timeouts with the 15 s default reserve: attempt 1 with its pause may take 31 s
    env = {"BUCKET_NAME": "b", "FANFETCH_BOOKKEEPING_CONNECT_TIMEOUT_S": "5",
           "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S": "20", "FANFETCH_BOOKKEEPING_MAX_ATTEMPTS": "2"}
    # WHEN the worker is composed / THEN one line says the reserve is shorter than the 31 s and names the variables
    with pytest.raises(InputError) as caught:
        build_worker_app(env)
    message = str(caught.value)
    assert "\n" not in message and "FANFETCH_DEADLINE_RESERVE_S=15 is shorter" in message and "(31 s:" in message
    assert "FANFETCH_BOOKKEEPING_READ_TIMEOUT_S=20" in message
    # AND a reserve of 0 (nothing kept back, on purpose) or one that holds 31 s is accepted
    assert build_worker_app(env | {"FANFETCH_DEADLINE_RESERVE_S": "0"}).settings.deadline_reserve_s == 0
    assert build_worker_app(env | {"FANFETCH_DEADLINE_RESERVE_S": "31"}).settings.bookkeeping_max_attempts == 2
