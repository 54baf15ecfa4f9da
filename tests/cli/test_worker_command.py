"""``fanfetch worker``'s options: each flag, else the variable the worker Lambda reads, else its default."""

from __future__ import annotations

import pytest

from fanfetch.cli.main import build_parser
from fanfetch.cli.worker_command import worker_options
from fanfetch.errors import InputError

ENV = {"QUEUE_URL": "https://sqs.example/q", "BUCKET_NAME": "bucket", "OUTPUT_PREFIX": "out/",
       "FANFETCH_CONCURRENCY": "8", "DLQ_URL": "https://sqs.example/dlq"}


def _options(argv: list[str], env: dict[str, str]):
    return worker_options(build_parser().parse_args(["worker", *argv]), env)


def test_the_lambdas_variables_configure_the_worker_and_a_flag_overrides_its_variable():
    # GIVEN the worker Lambda's environment WHEN no flag is given THEN the worker is configured like the Lambda
    options = _options([], ENV)
    assert (options.queue_url, options.dest, options.concurrency, options.dlq_url) == (
        "https://sqs.example/q", "s3://bucket/out", 8, "https://sqs.example/dlq")
    # WHEN flags are given THEN each overrides its variable
    options = _options(["--concurrency", "3", "--out", "/tmp/x", "--queue-url", "https://sqs.example/other"], ENV)
    assert (options.queue_url, options.dest, options.concurrency) == ("https://sqs.example/other", "/tmp/x", 3)


@pytest.mark.parametrize(("missing", "problem"), [("QUEUE_URL", "no work queue"), ("BUCKET_NAME", "no destination")])
def test_a_worker_without_a_queue_or_a_destination_is_an_input_error(missing: str, problem: str):
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(InputError, match=problem):
        _options([], env)
