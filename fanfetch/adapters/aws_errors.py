"""Error codes every AWS JSON-protocol service (DynamoDB, EventBridge, …) returns for a request that
will fail the same way again: bad credentials, no permission, a missing resource, an invalid request.
Adapters add their service's own codes to this set when they classify a ``ClientError``."""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from botocore.exceptions import ClientError

from fanfetch.errors import FanfetchError

__all__ = ["AWS_PERMANENT_CODES", "classify_by_code", "error_code"]

_E = TypeVar("_E", bound=FanfetchError)

AWS_PERMANENT_CODES = frozenset(
    {
        "AccessDeniedException",
        "ResourceNotFoundException",
        "ValidationException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
    }
)


def error_code(exc: ClientError) -> str:
    """The error code AWS answered with (``""`` when it gave none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def classify_by_code(exc: BaseException, what: str, *, permanent_codes: Collection[str], permanent: type[_E],
                     retryable: type[_E]) -> _E:
    """A botocore error as ``permanent`` when AWS's code is one of ``permanent_codes``, else ``retryable`` (so is
    anything that is not a ``ClientError``: a timeout, a dropped connection); by code, never by message text."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in permanent_codes:
            return permanent(f"{what}: {code}")
        return retryable(f"{what}: {code or 'error'}")
    return retryable(f"{what}: {type(exc).__name__}: {exc}")
