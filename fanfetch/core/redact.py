"""Secrets never leave the request: URL userinfo and signature/token query values are replaced by
``REDACTED`` before a URL (or a message holding URLs) reaches a log, a results file, the ledger, a
report, a DLQ attribute or a failure record. Errors redact their text here, so every sink gets it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_SECRET_PARAMS",
    "REDACTED",
    "configure_secret_params",
    "parse_secret_params",
    "redact_text",
    "redact_url",
    "secret_params",
]

REDACTED = "REDACTED"
# Query parameters whose values are credentials: AWS SigV4 presigned URLs, Azure SAS / CloudFront
# ("sig", "Signature"), OAuth-style tokens. Compared case-insensitively.
DEFAULT_SECRET_PARAMS = frozenset(
    {"x-amz-signature", "x-amz-credential", "x-amz-security-token", "signature", "sig", "token", "access_token"}
)
_secret_params = DEFAULT_SECRET_PARAMS
# A URL inside free text (any scheme: a refused ftp:// URL may carry a password too), up to whitespace
# or a character that commonly closes a quotation.
_PIECES = re.compile(r"[&#?]")
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>`]+", re.IGNORECASE)


def parse_secret_params(text: str) -> frozenset[str]:
    """``"api_key, X-Goog-Signature"`` → the lower-cased names (the FANFETCH_REDACT_PARAMS format)."""
    return frozenset(name.strip().lower() for name in text.split(",") if name.strip())


def configure_secret_params(extra: Iterable[str]) -> None:
    """Redact these query parameters too (the composition root passes FANFETCH_REDACT_PARAMS)."""
    global _secret_params
    _secret_params = DEFAULT_SECRET_PARAMS | frozenset(name.strip().lower() for name in extra if name.strip())


def secret_params() -> frozenset[str]:
    """The query parameter names redacted now (lower-case)."""
    return _secret_params


def redact_url(url: str) -> str:
    """``url`` without its userinfo and with secret query values replaced; anything unparsable is
    returned with only what can be found redacted (never raises)."""
    if not isinstance(url, str) or "://" not in url:
        return url
    if _nothing_to_redact(url):
        return url  # the common case, without parsing (``_redact_parsed`` would return it untouched too)
    return _redact_parsed(url)


def _redact_parsed(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return _redact_query_text(url)
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = _redact_query(parts.query)
    fragment = _redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # untouched: keep it byte for byte
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _nothing_to_redact(url: str) -> bool:
    """True when ``url`` surely has no userinfo and no secret parameter: no "@", no tab or line break (urlsplit
    drops those, which could join a name), and no piece after "?" or "#" (split at every "&", "#", "?": each of
    urlsplit's query and fragment pieces is one or more of these) whose name is secret."""
    if "@" in url or "\t" in url or "\r" in url or "\n" in url:
        return False
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=-1)
    if cut < 0:
        return True
    for piece in _PIECES.split(url[cut + 1:]):
        name, eq, _ = piece.partition("=")
        if eq and _is_secret(name):
            return False
    return True


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (error messages, log lines)."""
    if not isinstance(text, str) or "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def _redact_query(query: str) -> str:
    if not query:
        return query
    pieces = []
    for piece in query.split("&"):
        name, eq, _ = piece.partition("=")
        pieces.append(f"{name}={REDACTED}" if eq and _is_secret(name) else piece)
    return "&".join(pieces)


def _is_secret(raw_name: str) -> bool:
    name = raw_name.strip().lower()
    if "%" in name or "+" in name:
        name = unquote_plus(name).strip().lower()
    return name in _secret_params


def _redact_query_text(text: str) -> str:
    head, question, query = text.partition("?")
    return head + question + _redact_query(query) if question else text
