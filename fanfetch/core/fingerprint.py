"""The fingerprint of a group's definition: what a stored output was produced from.

Stored beside every output (S3 metadata, the local store's sidecar); a group is skipped only when its
stored output carries the fingerprint of its current definition.
"""

from __future__ import annotations

import hashlib
import json

from fanfetch.core.models import Group

__all__ = ["OUTPUT_FORMAT_VERSION", "fingerprint_group"]

# Bump when the bytes fanfetch stores for the same definition change (a merge rule, the index layout):
# every output written before then is fetched again on the next run.
OUTPUT_FORMAT_VERSION = 1


def fingerprint_group(group: Group) -> str:
    """``v1-`` plus 32 hex digits of a SHA-256 over the group's URLs in order, each URL's checks, the merge
    mode, the missing-file policy and the output format version. The key and the group id are not part
    of it: they say where the output goes, not what it holds."""
    on_missing = getattr(group, "on_missing", None)  # an enum, a string, or absent (older groups): "fail"
    definition = {
        "format": OUTPUT_FORMAT_VERSION,
        "merge": group.merge.value,
        "on_missing": str(getattr(on_missing, "value", on_missing) or "fail"),
        "sources": [[s.url, s.sha256, s.md5, s.size] for s in group.sources],
    }
    canonical = json.dumps(definition, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"v{OUTPUT_FORMAT_VERSION}-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
