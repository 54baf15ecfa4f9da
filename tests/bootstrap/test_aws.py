"""Every AWS client the composition root makes (issue 8 point 8): standard retries, bounded attempts, explicit
timeouts."""

from __future__ import annotations

from fanfetch.bootstrap.aws import aws_config


def test_every_client_uses_standard_retries_with_bounded_attempts_and_explicit_timeouts():
    config = aws_config()
    assert (config.retries, config.connect_timeout, config.read_timeout) == (
        {"mode": "standard", "total_max_attempts": 3}, 5.0, 30.0)
