"""Output-key rules beyond syntax: fanfetch's reserved folders, names a filesystem cannot tell apart
(case folding, Unicode NFC/NFD), path components too long for a filesystem, invisible characters.
"""

from __future__ import annotations

import unicodedata

__all__ = ["RESERVED_FOLDERS", "MAX_COMPONENT_BYTES", "key_identity", "key_problem"]

# Bookkeeping (results, ledger, failure records, output sidecars) and temp files live here.
RESERVED_FOLDERS = ("_jobs", ".fanfetch-tmp")
MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux/macOS file systems
# Cc control, Cf format (bidi overrides and isolates, zero-width space/joiners, BOM, soft hyphen),
# Cs surrogates, Zl/Zp line and paragraph separators: invisible or reordering in a listing.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def key_identity(key: str) -> str:
    """The form two keys share when a case-insensitive or normalising filesystem (macOS, Windows)
    would store them as one file: canonical caseless matching (NFD, case fold, then NFC)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", key).casefold())


_RESERVED = {key_identity(name) for name in RESERVED_FOLDERS}


def key_problem(key: str) -> str | None:
    """What is wrong with an (otherwise syntactically safe) output key, or None."""
    for char in key:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            return f"output key contains the invisible or bidi control character U+{ord(char):04X}: {key!r}"
    segments = key.split("/")
    if key_identity(segments[0]) in _RESERVED:
        return f"output key {key!r} lies in {segments[0]}/, a folder fanfetch reserves for its own bookkeeping"
    for segment in segments:
        size = len(segment.encode("utf-8", "surrogatepass"))
        if size > MAX_COMPONENT_BYTES:
            return (f"output key has a path component of {size} bytes, over the {MAX_COMPONENT_BYTES}-byte "
                    f"file name limit: {segment[:40]!r}…")
    return None
