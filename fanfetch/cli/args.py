"""Argument types shared by every ``fanfetch`` subcommand, so a bad flag reads the same everywhere, and the
flags the AWS commands share (``add_common_flags``).

Each type refuses a bad value with one line (argparse prints it and exits 2), with sane bounds:
concurrency, ports, hosts, destinations and endpoints are checked before anything runs.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit

from fanfetch.core.models import MergeMode
from fanfetch.settings import check_allow_host

__all__ = ["OneLineParser", "positive_int", "positive_float", "seconds", "merge_mode", "concurrency", "allow_host",
           "destination", "endpoint_url", "latency_ms", "port_number", "check_allow_host", "MAX_CONCURRENCY",
           "add_common_flags"]

MAX_CONCURRENCY = 4096  # threads (and pooled connections) in one process: more only exhausts the machine
# S3 bucket names: 3-63 characters of lower-case letters, digits, dots and hyphens, starting and ending
# with a letter or digit (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_T = TypeVar("_T")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _parse(text: str, kind: Callable[[str], _T], what: str) -> _T:
    """``kind(text)``, or the one-line refusal ``'<text>' is not <what>``."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    value = _parse(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def concurrency(text: str) -> int:
    """A positive whole number of parallel downloads, at most ``MAX_CONCURRENCY``."""
    value = positive_int(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {MAX_CONCURRENCY:,} downloads in flight")
    return value


def latency_ms(text: str) -> int:
    """A whole number of milliseconds, 0 to one minute."""
    value = _parse(text, int, "a whole number of milliseconds")
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 60000 ms")
    return value


def port_number(text: str) -> int:
    """A TCP port, 1-65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return value


def positive_float(text: str) -> float:
    value = _parse(text, float, "a number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
    return value


def seconds(text: str) -> float:
    value = _parse(text, float, "a number of seconds")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite, non-negative number of seconds")
    return value


def merge_mode(text: str) -> MergeMode:
    try:
        return MergeMode.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def allow_host(text: str) -> str:
    try:
        return check_allow_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def destination(text: str) -> str:
    """A local folder or ``s3://bucket[/prefix]`` with a valid bucket name."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty destination: give a folder or s3://bucket/prefix")
    if _CONTROL.search(text):
        raise argparse.ArgumentTypeError(f"{text!r} contains control characters")
    if text.lower().startswith("s3:"):
        parts = urlsplit(text)
        if not text.startswith("s3://") or not parts.netloc:
            raise argparse.ArgumentTypeError(f"{text!r} has no bucket: write s3://bucket or s3://bucket/prefix")
        if not _BUCKET.match(parts.netloc) or ".." in parts.netloc:
            raise argparse.ArgumentTypeError(
                f"{parts.netloc!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, '.' and '-')")
        if any(segment in (".", "..") for segment in parts.path.split("/")):
            raise argparse.ArgumentTypeError(f"{text!r}: the prefix must not contain '.' or '..' segments")
    elif "://" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: only local folders and s3:// destinations are supported")
    return text


def endpoint_url(text: str) -> str:
    """An ``http(s)://host[:port]`` endpoint (as ``--endpoint-url`` of the AWS CLI)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s)://host[:port] URL")
    return text


def add_common_flags(parser: argparse.ArgumentParser, *, stack: bool = True) -> None:
    """``--stack NAME`` (required; unless ``stack`` is False), ``--json`` and ``--endpoint-url``."""
    if stack:
        parser.add_argument("--stack", required=True, metavar="NAME", help="the deployed stack's name")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
    parser.add_argument("--endpoint-url", type=endpoint_url, default=os.environ.get("AWS_ENDPOINT_URL") or None,
                        help="AWS-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)")
