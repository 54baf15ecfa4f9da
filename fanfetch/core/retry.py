"""The pure retry policy of downloads: which HTTP statuses may succeed later, how long to back off,
and how to read a ``Retry-After`` header. No I/O and no clock: callers pass time and randomness in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = [
    "RETRYABLE_STATUSES",
    "backoff_delay",
    "is_retryable_status",
    "parse_retry_after",
]

# 408 Request Timeout, 425 Too Early and 429 Too Many Requests say "not now" rather than "never";
# every 5xx is the origin's trouble, so a later attempt may succeed (RFC 9110 section 15.6).
RETRYABLE_STATUSES = frozenset({408, 425, 429})

_MAX_EXPONENT = 62  # 2**62 * any positive base already exceeds every sane cap; avoids float overflow


def is_retryable_status(status: int) -> bool:
    """True when a response with this status may be followed by a successful attempt."""
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, full jitter.

    The window is ``min(max_s, base_s * 2**(attempt-1))`` and the delay is uniform in
    ``[0, window)`` ("full jitter", which spreads a thundering herd best; see the AWS
    Architecture Blog, "Exponential Backoff And Jitter"). ``rand`` returns a float in [0, 1).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    window = min(max_s, base_s * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return max(0.0, min(window, rand() * window))


def parse_retry_after(value: str, *, now_epoch: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or None if it is unreadable.

    Accepts delta-seconds (``"120"``) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``),
    the two forms of RFC 9110 section 10.2.3; a date in the past means "now" (0.0).
    ``now_epoch`` is the current wall-clock time in seconds since the Unix epoch.
    """
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # the obsolete asctime form has no zone; RFC 9110 says it is GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_epoch)
