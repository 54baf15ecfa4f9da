"""Field-level rules shared by every manifest format and the message decoder.

Each check raises ``ManifestError`` naming the source, line and field, so a user can fix the
exact spot; callers pass the position they know.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fanfetch.core.limits import MAX_GROUP_ID_BYTES, utf8_bytes
from fanfetch.core.manifest_rules import key_problem
from fanfetch.errors import ManifestError

__all__ = ["check_key", "check_url", "check_group_id", "MAX_KEY_BYTES"]

MAX_KEY_BYTES = 1024  # S3's object key limit
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_url(url: str, *, source: str, line: int | None = None, field: str = "url") -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host; raise ManifestError otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise ManifestError(source, "empty URL", line=line, field=field)
    if _CONTROL.search(url) or " " in url:
        raise ManifestError(source, f"URL contains whitespace or control characters: {url!r}", line=line, field=field)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ManifestError(source, f"malformed URL {url!r}: {exc}", line=line, field=field) from None
    if parts.scheme not in ("http", "https"):
        raise ManifestError(
            source, f"URL scheme must be http or https, not {parts.scheme or 'missing'!r}: {url}", line=line,
            field=field,
        )
    if not parts.hostname:
        raise ManifestError(source, f"URL has no host: {url}", line=line, field=field)
    if port == 0:
        raise ManifestError(source, f"URL has port 0: {url}", line=line, field=field)
    return url


def check_key(key: str, *, source: str, line: int | None = None, field: str = "key") -> str:
    """Return ``key`` if it is a safe relative object key; raise ManifestError otherwise.

    Safe means: non-empty, no leading ``/``, no ``.``/``..``/empty segments, no backslashes, no
    control characters, at most 1024 UTF-8 bytes, and ``manifest_rules.key_problem``'s rules (not in a
    reserved folder, no component over 255 bytes, no invisible or bidi characters). The same key is then
    safe as an S3 key and as a path below a local destination folder.
    """
    if not isinstance(key, str) or not key:
        raise ManifestError(source, "empty output key", line=line, field=field)
    if _CONTROL.search(key):
        raise ManifestError(source, f"output key contains control characters: {key!r}", line=line, field=field)
    if key.startswith("/"):
        raise ManifestError(source, f"output key must be relative (no leading '/'): {key!r}", line=line, field=field)
    if "\\" in key:
        raise ManifestError(source, f"output key must not contain backslashes: {key!r}", line=line, field=field)
    segments = key.split("/")
    trailing_slash = segments[-1] == "" and len(segments) > 1
    for segment in segments[:-1] if trailing_slash else segments:
        if segment in ("", ".", ".."):
            raise ManifestError(
                source, f"output key has an empty, '.' or '..' segment: {key!r}", line=line, field=field
            )
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ManifestError(source, f"output key is longer than {MAX_KEY_BYTES} bytes", line=line, field=field)
    problem = key_problem(key)
    if problem is not None:
        raise ManifestError(source, problem, line=line, field=field)
    return key


def check_group_id(group_id: object, *, source: str, line: int | None = None, field: str = "group") -> str:
    """Return the group id as a string if it is non-empty and printable; raise ManifestError otherwise."""
    if isinstance(group_id, bool) or not isinstance(group_id, (str, int)):
        raise ManifestError(source, "group id must be a string", line=line, field=field)
    text = str(group_id).strip()
    if not text:
        raise ManifestError(source, "empty group id", line=line, field=field)
    if _CONTROL.search(text):
        raise ManifestError(source, f"group id contains control characters: {text!r}", line=line, field=field)
    if utf8_bytes(text) > MAX_GROUP_ID_BYTES:  # bytes, as DynamoDB and S3 count them
        raise ManifestError(source, f"group id is longer than {MAX_GROUP_ID_BYTES} bytes in UTF-8", line=line,
                            field=field)
    return text
