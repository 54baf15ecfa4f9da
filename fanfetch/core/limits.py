"""The limits of the AWS services a group's names pass through, checked when a manifest is validated
instead of discovered by a worker: S3 keys (1,024 UTF-8 bytes, the output prefix included), DynamoDB sort
keys (1,024 bytes: the ledger's ``GROUP#<group id>``) and the characters SQS accepts in a message."""

from __future__ import annotations

import re

__all__ = [
    "S3_MAX_KEY_BYTES",
    "MAX_GROUP_ID_BYTES",
    "RESERVED_JOB_ID_BYTES",
    "DONE_MARKER_NAME",
    "utf8_bytes",
    "first_sqs_refused",
]

S3_MAX_KEY_BYTES = 1024  # S3: an object key is at most 1,024 bytes of UTF-8
# DynamoDB: a sort key is at most 1,024 bytes; the ledger's is "GROUP#<group id>". A group id also names its
# failure record in S3, <prefix>_jobs/<job id>/failed/<group id>.json. 512 bytes leaves room for both.
MAX_GROUP_ID_BYTES = 512
# A job id is 16 hex digits, plus "-YYYYmmddTHHMMSSZ" for a refresh run; reserved generously for key budgets.
RESERVED_JOB_ID_BYTES = 64
DONE_MARKER_NAME = "_fanfetch.json"  # merge mode none: <key>/_fanfetch.json marks the group done
# XML 1.0's characters, which SQS accepts in message bodies and attributes and nothing else:
# #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (U+FFFE and U+FFFF are refused)
_SQS_REFUSED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def utf8_bytes(text: str) -> int:
    """How many bytes ``text`` takes in UTF-8 (what S3 and DynamoDB count)."""
    return len(text.encode("utf-8", "surrogatepass"))


def first_sqs_refused(text: str) -> str | None:
    """The first character of ``text`` SQS would refuse, or None."""
    match = _SQS_REFUSED.search(text)
    return match.group() if match else None

