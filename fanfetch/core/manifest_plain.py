"""The plain JSON Lines shape, read by one regular expression instead of the JSON decoder and the URL parser:
a line is taken only when every rule holds as the full path would find; anything else goes to the full path.
"""

from __future__ import annotations

import re

from fanfetch.core.bookkeeping import MAX_ENCODED_CHARS, failure_record_key
from fanfetch.core.limits import (
    DONE_MARKER_NAME,
    MAX_GROUP_ID_BYTES,
    RESERVED_JOB_ID_BYTES,
    S3_MAX_KEY_BYTES,
    utf8_bytes,
)
from fanfetch.core.manifest_groups import MAX_URL_CHARS
from fanfetch.core.manifest_rules import MAX_COMPONENT_BYTES, RESERVED_FOLDERS
from fanfetch.core.merge import name_files
from fanfetch.core.models import Group, MergeMode, OnMissing, Source
from fanfetch.core.validate import MAX_KEY_BYTES

__all__ = ["Plain", "plain_group", "read_plain"]


_RESERVED = frozenset(name.lower() for name in RESERVED_FOLDERS)
# The longest failure record key any group id can have (its id encoded: at most MAX_ENCODED_CHARS); a prefix
# leaving less room sends every line to the full path, which measures the key itself.
_FAILURE_RECORD_MAX_BYTES = len(failure_record_key("j" * RESERVED_JOB_ID_BYTES, "")) + MAX_ENCODED_CHARS

# The common JSON Lines shape, recognised without the JSON decoder: fields in the documented order, plain
# strings of printable ASCII without space, quote or backslash (so the text is the value, and no rule about
# whitespace, control, invisible or non-ASCII characters can apply), URLs that urlsplit reads as written (a
# plain host: no user info, no IPv6 brackets; a port 1-65535). Anything else takes the full path.
_PLAIN = r'[!#-\[\]-~]'
_NOT_QUERY = r'[!$->@-\[\]-~]'  # _PLAIN without "?" and "#"
_WS = r'[ \t]*'
_PORT = r'(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})'
_HEAD = rf'https?://[A-Za-z0-9._-]+(?::{_PORT})?'
_URL_TEXT = rf'{_HEAD}(?:/{_NOT_QUERY}*)?(?:[?#]{_PLAIN}*)?'
_LINE = re.compile(
    r'\{' + _WS + r'"group"' + _WS + ':' + _WS + rf'(?:"({_PLAIN}+)"|(-?(?:0|[1-9][0-9]{{0,17}})))' + _WS + ','
    + _WS + r'"urls"' + _WS + ':' + _WS + r'\[' + _WS
    + rf'"(({_HEAD})((?:/{_NOT_QUERY}*)?)(?:[?#]{_PLAIN}*)?)"'  # the first URL: whole, head, path
    + rf'((?:{_WS},{_WS}"{_URL_TEXT}")*)' + _WS + r'\]'  # the others
    + rf'(?:{_WS},{_WS}"key"{_WS}:{_WS}"({_PLAIN}+)")?'
    + rf'(?:{_WS},{_WS}"merge"{_WS}:{_WS}"(csv|concat|none|csv-lenient)")?'
    + rf'(?:{_WS},{_WS}"on_missing"{_WS}:{_WS}"(fail|skip)")?'
    + _WS + r'\}'
)
_OTHER_URL = re.compile(rf'"(({_HEAD})[^"]*)"')  # one of the others (whole, head): checked by _LINE
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,7}\Z")
_MERGES = {mode.value: mode for mode in MergeMode}
_ON_MISSING = {policy.value: policy for policy in OnMissing}
_CSV_MODES = frozenset({MergeMode.CSV, MergeMode.CSV_LENIENT})

# A JSON Lines group of the plain shape, key and merge mode final, strings only (a tuple: one per line, cheap):
# (group id, URLs, URL heads "scheme://host[:port]", key, merge mode, on_missing or None).
Plain = tuple


def plain_group(plain: Plain) -> Group:
    """The group a plain tuple stands for."""
    group_id, urls, _, key, merge, on_missing = plain
    return Group(group_id=group_id, sources=tuple(Source(url=url) for url in urls), key=key, merge=merge,
                 on_missing=on_missing)


def read_plain(text: str, default_merge: MergeMode, prefix_bytes: int) -> Plain | None:
    """The line's group when it has the plain shape and every rule holds (as ``draft_from_record``,
    ``finish_group`` and ``check_stored_keys`` would find), else None: the full path decides then, so None never
    hides a problem and a group returned is one the full path accepts."""
    match = _LINE.fullmatch(text)
    if match is None:
        return None
    text_id, int_id, first, head, path, others, key, merge_name, on_missing = match.groups()
    group_id = text_id if text_id is not None else str(int(int_id))
    if len(group_id) > MAX_GROUP_ID_BYTES or len(first) > MAX_URL_CHARS:
        return None
    urls, heads = [first], [head]
    if others:
        for other in _OTHER_URL.finditer(others):
            if len(other.group(1)) > MAX_URL_CHARS:
                return None
            urls.append(other.group(1))
            heads.append(other.group(2))
    merge = _MERGES[merge_name] if merge_name is not None else default_merge
    if key is None:  # manifest_groups._default_key, the first URL's path read by the pattern
        if merge in _CSV_MODES:
            key = f"{group_id}.csv"
        elif merge is MergeMode.NONE:
            key = f"{group_id}/"
        else:
            stem, dot, ext = path.rsplit("/", 1)[-1].rpartition(".")
            key = f"{group_id}.{ext}" if stem and dot and _EXTENSION.match(dot + ext) else group_id
    if "/" in key or len(key) > MAX_COMPONENT_BYTES or key in (".", "..") or key.lower() in _RESERVED:
        if not _plain_key_ok(key):
            return None
    stored = len(key)
    if merge is MergeMode.NONE:
        if not key.endswith("/"):
            key += "/"
        stored = len(key) + max([utf8_bytes(name) for name in (DONE_MARKER_NAME, *name_files(urls))])
    if prefix_bytes + stored > S3_MAX_KEY_BYTES or prefix_bytes + _FAILURE_RECORD_MAX_BYTES > S3_MAX_KEY_BYTES:
        return None
    return group_id, urls, heads, key, merge, None if on_missing is None else _ON_MISSING[on_missing]


def _plain_key_ok(key: str) -> bool:
    """``check_key`` for a plain (printable ASCII) key: True only where check_key accepts it."""
    if "/" not in key:
        return len(key) <= MAX_COMPONENT_BYTES and key not in (".", "..") and key.lower() not in _RESERVED
    if len(key) > MAX_KEY_BYTES or key.startswith("/"):
        return False
    segments = key.split("/")
    if segments[-1] == "":
        segments.pop()
    if segments[0].lower() in _RESERVED:
        return False
    return all(segment not in ("", ".", "..") and len(segment) <= MAX_COMPONENT_BYTES for segment in segments)
