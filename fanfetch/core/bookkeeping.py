"""Names inside fanfetch's bookkeeping folder (``_jobs/``): job ids are checked, group and message ids
are encoded, so no id can ever form a path of its own (``..``, ``/``) or collide on a case-insensitive disk.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["JOB_ID_PATTERN", "encode_component", "is_valid_job_id"]

# Derived job ids are 16 hex digits, refresh runs add "-YYYYmmddTHHMMSSZ"; operators may name their own.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Lower-case letters only: an upper-case letter is escaped, so ids differing in case stay distinct files
# on case-insensitive file systems too (escapes use upper-case hex, so no two encodings fold together).
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_ENCODED_CHARS = 200  # well under the 255-byte file name limit, leaving room for ".json"


def is_valid_job_id(job_id: object) -> bool:
    """Is ``job_id`` a string that is safe as one path component as it stands?"""
    return isinstance(job_id, str) and JOB_ID_PATTERN.fullmatch(job_id) is not None and ".." not in job_id


def encode_component(text: str) -> str:
    """One safe path component for ``text``: letters a–z, digits, ``_`` and ``-`` kept, every other
    character's UTF-8 bytes as ``%XX`` (so ``.``, ``/`` and upper case are escaped). Distinct texts give
    distinct components; a component that would be longer than 200 characters keeps its first 150 and
    ends in ``~`` plus 32 hex digits of the text's SHA-256."""
    data = text.encode("utf-8", "surrogatepass")
    encoded = "".join(chr(b) if chr(b) in _SAFE else f"%{b:02X}" for b in data)
    if len(encoded) <= _MAX_ENCODED_CHARS:
        return encoded
    return encoded[:150] + "~" + hashlib.sha256(data).hexdigest()[:32]
