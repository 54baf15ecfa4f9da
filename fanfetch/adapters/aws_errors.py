"""Error codes every AWS JSON-protocol service (DynamoDB, EventBridge, …) returns for a request that
will fail the same way again: bad credentials, no permission, a missing resource, an invalid request.
Adapters add their service's own codes to this set when they classify a ``ClientError``."""

from __future__ import annotations

__all__ = ["AWS_PERMANENT_CODES"]

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
