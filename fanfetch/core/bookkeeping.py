"""Names inside fanfetch's bookkeeping folder (``_jobs/``): job ids are checked, group and message ids
are encoded, so no id can ever form a path of its own (``..``, ``/``) or collide on a case-insensitive disk.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["JOB_ID_PATTERN", "MAX_ENCODED_CHARS", "encode_component", "failure_record_key", "is_valid_job_id",
           "job_dir_name"]

# Derived job ids are 16 hex digits, refresh runs add "-YYYYmmddTHHMMSSZ"; operators may name their own.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Lower-case letters only: an upper-case letter is escaped, so ids differing in case stay distinct files
# on case-insensitive file systems too (escapes use upper-case hex, so no two encodings fold together).
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_ENCODED_CHARS = 200  # well under the 255-byte file name limit, leaving room for ".json"


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
    if len(encoded) <= MAX_ENCODED_CHARS:
        return encoded
    return encoded[:150] + "~" + hashlib.sha256(data).hexdigest()[:32]


def job_dir_name(job_id: str) -> str:
    """The job's folder name under ``_jobs/``: the id itself when valid, else ``~`` and its encoding (a
    name no valid id and none of the reserved ``_…`` folders can have)."""
    return job_id if is_valid_job_id(job_id) else "~" + encode_component(job_id)


def failure_record_key(job_id: str, group_id: str) -> str:
    """``_jobs/<job>/failed/<group>.json``, both ids encoded: no id can name a path of its own. The worker
    writes it; validation measures it (so a manifest is refused when this key would pass S3's limit)."""
    return f"_jobs/{job_dir_name(job_id)}/failed/{encode_component(group_id)}.json"
