"""Manifests -> a validated ``Job``: JSON Lines, CSV or a TOML job spec, checked whole before any work.

A bad manifest raises one ``ManifestError`` whose ``str()`` is ``file:line: field: problem``. Formats:

* JSON Lines (``.jsonl``/``.ndjson``/``.json``), one group per line::

      {"group": "50430", "urls": ["https://...", {"url": "https://...", "sha256": "..."}],
       "key": "stations/50430.csv", "merge": "csv"}

  ``key`` and ``merge`` are optional; a URL may be an object with ``sha256``, ``md5`` and ``size``.
  Blank lines and lines starting with ``#`` are skipped; unknown fields are errors.
* CSV (``.csv``) with header ``group,url`` and optional ``key,sha256,md5,size`` columns; rows of a
  group need not be adjacent, its URLs keep file order.
* A job spec (``.toml``) expanding a URL template over a table: see ``fanfetch.core.spec``.

Otherwise the first non-blank character decides: ``{`` JSON Lines, ``[section]`` or ``name =`` TOML,
anything else CSV. Across formats: group ids and output keys are unique, every group has a URL,
URLs are http(s), keys are safe relative paths. A missing key is the group id plus ``.csv`` (merge
``csv``), plus the first URL's short extension (``concat``), or ``<group>/`` (``none``, a folder).
The job id is a hash of the validated groups, so the same manifest always gets the same id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from fanfetch.core.manifest_csv import read_csv
from fanfetch.core.manifest_groups import Problems, assemble_job, derive_job_id
from fanfetch.core.manifest_jsonl import read_jsonl, read_records
from fanfetch.core.manifest_text import decode_lines
from fanfetch.core.models import Job, MergeMode
from fanfetch.core.spec import load_spec, parse_spec
from fanfetch.errors import ManifestError

__all__ = ["FORMATS", "detect_format", "parse_manifest", "parse_groups", "parse_spec", "derive_job_id"]

FORMATS = ("jsonl", "csv", "spec")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".toml": "spec"}
_TOML_START = re.compile(rb"""\[|[A-Za-z0-9_\-"'.]+[ \t]*=""")


def detect_format(data: bytes, *, source: str) -> str:
    """``jsonl``, ``csv`` or ``spec``: from the source name's suffix, else from the first non-blank,
    non-comment line."""
    name = source.split("?", 1)[0].rsplit("/", 1)[-1].lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    for raw in data.removeprefix(b"\xef\xbb\xbf")[:65536].split(b"\n"):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if line.startswith(b"{"):
            return "jsonl"
        if _TOML_START.match(line):
            return "spec"
        return "csv"
    return "csv"


def parse_manifest(
    data: bytes,
    *,
    source: str,
    default_merge: MergeMode = MergeMode.CONCAT,
    read_related: Callable[[str], bytes] | None = None,
    fmt: str | None = None,
    key_prefix: str = "",
    max_spec_urls: int | None = None,
) -> Job:
    """Parse and validate a whole manifest. ``source`` names it in errors (and picks the format when
    ``fmt`` is None); ``read_related(path)`` reads files a spec refers to, relative to the spec."""
    if fmt is None:
        fmt = detect_format(data, source=source)
    if fmt == "spec":
        return load_spec(data, source=source, read_related=read_related, default_merge=default_merge,
                         key_prefix=key_prefix, max_urls=max_spec_urls)
    problems = Problems()  # up to MAX_PROBLEMS reported at once
    if fmt == "jsonl":
        drafts = read_jsonl(decode_lines(data, source=source), source=source, problems=problems)
    elif fmt == "csv":
        drafts = read_csv(decode_lines(data, source=source), source=source, problems=problems)
    else:
        raise ManifestError(
            source, f"unknown manifest format {fmt!r} (expected one of: {', '.join(FORMATS)})"
        )
    return assemble_job(drafts, source=source, default_merge=default_merge, problems=problems, key_prefix=key_prefix)


def parse_groups(
    records: Sequence[Mapping[str, object]],
    *,
    source: str = "event",
    default_merge: MergeMode = MergeMode.CONCAT,
    key_prefix: str = "",
) -> Job:
    """Validate inline groups (``{"groups": [...]}`` in an event) by the JSON Lines rules; the
    "line" in errors is the record's 1-based position."""
    problems = Problems()
    drafts = read_records(records, source=source, problems=problems)
    return assemble_job(drafts, source=source, default_merge=default_merge, problems=problems, key_prefix=key_prefix)
