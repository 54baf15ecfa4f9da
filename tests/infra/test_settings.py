"""CDK context parsing and validation: defaults, string values from ``-c``, one clear error for bad input."""

from __future__ import annotations

import pytest

from stacks.settings import ContextError, StackSettings
from tests.infra.conftest import build_stack


def _from_context(**context: object) -> StackSettings:
    return StackSettings.from_context(context.get)


def test_defaults_are_the_documented_ones() -> None:
    # GIVEN no context at all
    # WHEN settings are read
    settings = _from_context()
    # THEN the README's defaults apply
    assert (settings.worker_memory_mb, settings.worker_timeout_s, settings.worker_max_concurrency) == (
        1024,
        300,
        50,
    )
    assert (settings.batch_size, settings.download_concurrency, settings.max_receive_count) == (10, 16, 5)
    assert (settings.producer_memory_mb, settings.producer_timeout_s) == (512, 900)
    assert settings.worker_ephemeral_storage_mb == 2048
    assert (settings.output_prefix, settings.allow_hosts, settings.has_schedule) == ("", "", False)


def test_string_values_from_the_command_line_are_parsed() -> None:
    # GIVEN values as `cdk synth -c key=value` passes them: always strings
    settings = _from_context(
        workerTimeoutS="120", batchSize="5", allowHosts=" a.example:8080, 127.0.0.1:9000 "
    )
    # THEN they become typed, normalized settings
    assert settings.worker_timeout_s == 120
    assert settings.batch_size == 5
    assert settings.allow_hosts == "a.example:8080,127.0.0.1:9000"


def test_allow_hosts_accepts_a_json_list_from_cdk_json() -> None:
    assert _from_context(allowHosts=["A.example", "[::1]:9000"]).allow_hosts == "a.example,[::1]:9000"


@pytest.mark.parametrize("timeout_s", [30, 300, 900])
def test_visibility_timeout_is_six_times_the_worker_timeout(timeout_s: int) -> None:
    assert _from_context(workerTimeoutS=timeout_s).queue_visibility_timeout_s == 6 * timeout_s


def test_queue_age_alarm_is_derived_from_the_redrive_budget_unless_given() -> None:
    # GIVEN the defaults: 5 receives x 1800 s visibility
    assert _from_context().effective_queue_age_alarm_s == 5 * 1800
    # AND a short worker timeout never derives less than an hour
    assert _from_context(workerTimeoutS=30).effective_queue_age_alarm_s == 3600
    # AND an explicit value wins
    assert _from_context(queueAgeAlarmS="600").effective_queue_age_alarm_s == 600


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("batchSize", 11, "batchSize=11: must be between 1 and 10"),
        ("batchSize", "ten", "batchSize='ten': expected an integer"),
        ("batchSize", True, "expected an integer, got a boolean"),
        ("maxReceiveCount", 4, "maxReceiveCount=4: must be between 5 and 1000"),
        ("workerMaxConcurrency", 1, "workerMaxConcurrency=1: must be between 2 and 1000"),
        ("workerTimeoutS", 901, "workerTimeoutS=901: must be between 30 and 900"),
        ("workerMemoryMb", 64, "workerMemoryMb=64: must be between 128 and 10240"),
        ("workerEphemeralStorageMb", 256, "workerEphemeralStorageMb=256: must be between 512 and 10240"),
        ("workerEphemeralStorageMb", "10241", "workerEphemeralStorageMb=10241: must be between 512 and 10240"),
        ("workerEphemeralStorageMb", "2 GB", "workerEphemeralStorageMb='2 GB': expected an integer"),
        ("logRetentionDays", 10, "logRetentionDays=10: must be one of"),
        ("outputPrefix", "/abs/", "outputPrefix='/abs/': must be a relative S3 key prefix"),
        ("outputPrefix", "a/../b", "must be a relative S3 key prefix"),
        ("allowHosts", "ok.example,bad host", "not a host[:port]: 'bad host'"),
        ("alarmEmail", "nobody", "alarmEmail='nobody': not an e-mail address"),
    ],
)
def test_a_bad_value_names_the_key_and_what_is_allowed(key: str, value: object, expected: str) -> None:
    # WHEN a bad value is given
    with pytest.raises(ContextError) as caught:
        _from_context(**{key: value})
    # THEN the error names the context key, the value and the allowed range
    assert expected in str(caught.value)


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ContextError) as caught:
        _from_context(batchSize=0, workerMemoryMb=1, maxReceiveCount=1)
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert all(key in message for key in ("batchSize", "workerMemoryMb", "maxReceiveCount"))


def test_reserved_concurrency_below_the_event_source_maximum_is_rejected() -> None:
    with pytest.raises(ContextError, match="workerReservedConcurrency=10: must be >= workerMaxConcurrency"):
        _from_context(workerMaxConcurrency=50, workerReservedConcurrency=10)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"scheduleExpression": "rate(1 day)"}, "give both"),
        ({"scheduleManifest": "m.csv"}, "give both"),
        ({"scheduleExpression": "every day", "scheduleManifest": "m.csv"}, "'rate(...)' or 'cron(...)'"),
        ({"scheduleExpression": "rate(1 day)", "scheduleManifest": "s3://b/m.csv"}, "not a URL"),
    ],
)
def test_schedule_needs_an_expression_and_a_manifest_key(context: dict[str, str], expected: str) -> None:
    with pytest.raises(ContextError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        _from_context(**context)


def test_the_stack_refuses_a_bad_context_value_before_creating_anything() -> None:
    # GIVEN an app whose context has a bad batch size
    # WHEN the stack is built THEN it fails with the readable context error
    with pytest.raises(ContextError, match="batchSize=11: must be between 1 and 10"):
        build_stack({"batchSize": 11})
