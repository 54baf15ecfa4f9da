"""How every AWS client is made: botocore's standard retries, a bounded number of attempts and explicit timeouts
(each call's worst case known), in the region the AWS CLI would use; one-attempt clients for a synchronous Invoke."""

from __future__ import annotations

import os
from typing import Any

from fanfetch.settings import aws_region

__all__ = ["aws_config", "aws_client", "worst_call_s", "lambda_invoke_client"]


# Every AWS call has a known worst case (issue 8): botocore's "standard" retry mode (AWS's documented
# default; "adaptive" is experimental and adds client-side rate limiting), a bounded number of attempts and
# explicit timeouts instead of botocore's 60 s connect / 60 s read.
AWS_MAX_ATTEMPTS = 3  # total attempts per call, the first included (standard mode's own default)
AWS_CONNECT_TIMEOUT_S = 5.0
AWS_READ_TIMEOUT_S = 30.0  # above SQS long polling's longest wait (20 s); S3 parts stream within it


# botocore standard mode pauses after attempt n at most min(2**(n-1), 20) s (throttling scale), raised by an
# x-amz-retry-after header to at most 5 s more (botocore/retries/standard.py ExponentialBackoff)
_STANDARD_MAX_BACKOFF_S = 20.0
_RETRY_AFTER_EXTRA_S = 5.0
LAMBDA_MAX_TIMEOUT_S = 900  # no Lambda function runs longer


def aws_config(
    *,
    read_timeout_s: float = AWS_READ_TIMEOUT_S,
    connect_timeout_s: float = AWS_CONNECT_TIMEOUT_S,
    max_attempts: int = AWS_MAX_ATTEMPTS,
    tcp_keepalive: bool = False,
) -> Any:
    """botocore ``Config``: standard retries, ``max_attempts`` in all, explicit timeouts, a pool for our threads."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                  connect_timeout=connect_timeout_s, read_timeout=read_timeout_s, max_pool_connections=64,
                  tcp_keepalive=tcp_keepalive)


def worst_call_s(config: Any) -> float:
    """The longest one call through a client with ``config`` can take: every attempt timing out on connect
    and read, plus the largest pauses between attempts."""
    attempts = int(config.retries["total_max_attempts"])
    pauses = sum(min(2.0 ** (n - 1), _STANDARD_MAX_BACKOFF_S) + _RETRY_AFTER_EXTRA_S for n in range(1, attempts))
    return attempts * (float(config.connect_timeout) + float(config.read_timeout)) + pauses


def aws_client(service: str, *, endpoint_url: str | None = None, config: Any = None) -> Any:
    """A boto3 client (``config``: ``aws_config()`` unless given) in the region the AWS CLI would use."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url or None, config=config or aws_config(),
                        region_name=aws_region(os.environ))


def lambda_invoke_client(read_timeout_s: float, *, endpoint_url: str | None = None) -> Any:
    """A Lambda client for one synchronous ``Invoke`` that must run the function at most once: a single
    attempt (a retried Invoke runs the function again), a read timeout above the function's own timeout
    (botocore's 60 s default made a longer producer run be invoked again and again), and TCP keep-alive so
    a NAT or firewall does not drop the silent connection while the function runs."""
    return aws_client("lambda", endpoint_url=endpoint_url,
                      config=aws_config(read_timeout_s=read_timeout_s, max_attempts=1, tcp_keepalive=True))
