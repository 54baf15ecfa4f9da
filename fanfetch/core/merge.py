"""Merge a group's downloaded parts into one output stream (``csv`` / ``concat``) in bounded memory,
and name the files of a ``none`` group. Pure: works on binary file objects, never opens a path.

Memory: parts are copied in ``chunk_bytes`` reads; only the start of a part (its first line plus what
came with it, at most ``header_cap_bytes``) is ever held at once. Every part is read from its
beginning (rewound first when seekable, so a freshly written temp file needs no ``seek(0)``); parts
are neither closed nor re-encoded.

``concat``: the parts' bytes in order, exactly; nothing added, nothing removed.

``csv`` (strict, the default): as ``csv-lenient`` below, but a non-empty part whose first line (after
  BOM and line-ending normalisation) differs from the first part's header raises ``MergeError`` naming
  the part (its URL), and ``html_part`` refuses a part the origin served as ``text/html``: an error page
  or a changed schema never ends up in the middle of a CSV.

``csv-lenient``: the parts concatenated, keeping the first header and dropping repeated identical headers.
  - A part's *header* is its first line. Only that line is examined: there is no CSV parsing, so data
    rows (quoted fields with embedded newlines included) are copied byte for byte. This assumes a
    header has no quoted newline, which holds for real-world headers.
  - A UTF-8 BOM is stripped from the start of every part, and the output has none: pandas and Spark
    read BOM-less UTF-8 by default, while a kept BOM ends up glued to the first column's name.
  - An *empty* part (0 bytes, or only a BOM and/or blanks: spaces, tabs, CR, LF) contributes nothing;
    the first non-empty part supplies the header and is copied whole (minus its BOM).
  - Headers are compared without their line ending, so ``a,b\\r\\n`` equals ``a,b\\n`` and ``a,b`` at
    the end of a part. A later part whose first line equals the first header loses that line; a part
    whose first line differs is kept whole (different schema or no header: never drop data).
  - A *header-only* part (the first header, then nothing or only blanks) contributes nothing.
  - A part missing its final newline gets one before the next contributing part starts, in that
    part's style (CRLF when its first line ended in CRLF, else LF; a dangling CR only gets its LF),
    so two lines are never glued together. The output's last part keeps its end as given: nothing is
    appended after the last byte of data.
  - A first line longer than ``header_cap_bytes`` is not treated as a header: the part is data and is
    kept whole (and if it is the first part, no later header is dropped).
  - Line endings of data rows are not normalised: mixed CRLF/LF parts give mixed output, which
    pandas, Spark and the csv module all read.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from fanfetch.core.models import MergeMode
from fanfetch.errors import MergeError

__all__ = ["merge_streams", "name_files", "html_part", "DEFAULT_CHUNK_BYTES", "HEADER_CAP_BYTES", "MAX_NAME_BYTES",
           "INDEX_NAME"]

# A ``none`` group's index, stored last in its folder: its presence marks the group done.
INDEX_NAME = "_fanfetch.json"

DEFAULT_CHUNK_BYTES = 1 << 20  # 1 MiB per read/write
HEADER_CAP_BYTES = 1 << 20  # the most of a part's start held in memory to find its first line
MAX_NAME_BYTES = 255  # NAME_MAX of common filesystems; S3 allows more, a local folder does not

_BOM = b"\xef\xbb\xbf"
_BLANK = b" \t\r\n"


def merge_streams(
    mode: MergeMode,
    parts: Iterable[BinaryIO],
    out: BinaryIO,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    header_cap_bytes: int = HEADER_CAP_BYTES,
    labels: Sequence[str] | None = None,
) -> int:
    """Write ``parts`` merged by ``mode`` to ``out``; return the number of bytes written.

    ``labels`` (the parts' URLs) name a part in a ``MergeError``; ``out`` then holds a partial merge
    that must not be stored. ``MergeMode.NONE`` raises ValueError: those files are stored one by one
    (see ``name_files``).
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be at least 1, not {chunk_bytes}")
    if header_cap_bytes < len(_BOM):
        raise ValueError(f"header_cap_bytes must be at least {len(_BOM)}, not {header_cap_bytes}")
    if mode is MergeMode.CONCAT:
        return _concat(parts, out, chunk_bytes)
    if mode.is_csv:
        return _merge_csv(parts, out, chunk_bytes, header_cap_bytes, strict=mode is MergeMode.CSV, labels=labels)
    raise ValueError(
        f"merge mode {getattr(mode, 'value', mode)!r} does not merge; store the files one by one"
    )


def _concat(parts: Iterable[BinaryIO], out: BinaryIO, chunk_bytes: int) -> int:
    written = 0
    for part in parts:
        _rewind(part)
        n, _ = _copy_rest(part, out, chunk_bytes)
        written += n
    return written


@dataclass(frozen=True)
class _Head:
    """The start of a part, BOM removed: enough to know its first line and whether it has data."""

    data: bytes
    complete: bool  # ``data`` is the whole part

    @property
    def first_line(self) -> bytes | None:
        """The first line with its line ending, or None when it is longer than the cap."""
        newline_at = self.data.find(b"\n")
        if newline_at >= 0:
            return self.data[: newline_at + 1]
        return self.data if self.complete else None


def _merge_csv(
    parts: Iterable[BinaryIO], out: BinaryIO, chunk_bytes: int, cap: int, *, strict: bool,
    labels: Sequence[str] | None,
) -> int:
    written = 0
    started = False
    header_key: bytes | None = None
    default_eol = b"\n"
    owed = b""  # the newline the previous contributing part lacked, written only if more data follows
    for index, part in enumerate(parts):
        _rewind(part)
        head = _read_head(part, chunk_bytes, cap)
        if head.complete and not head.data.strip(_BLANK):
            continue  # empty part
        first = head.first_line
        key = None if first is None else _line_key(first)
        if not started:
            started, header_key, body = True, key, head.data
            default_eol = _line_end(first) or default_eol
        elif first is not None and key == header_key:  # key is None only when first is None
            body = head.data[len(first) :]
            if head.complete and not body.strip(_BLANK):
                continue  # header-only part
        elif strict:
            label = labels[index] if labels is not None and index < len(labels) else f"part {index + 1}"
            raise MergeError(
                f"{label}: its CSV header {_show(key)} differs from the first part's {_show(header_key)} "
                "(merge csv-lenient keeps such parts as data)"
            )
        else:
            body = head.data  # a different first line is data or another schema: keep it
        _write(out, owed)
        _write(out, body)
        written += len(owed) + len(body)
        last = body[-1:]
        if not head.complete:
            n, tail = _copy_rest(part, out, chunk_bytes)
            written += n
            last = tail or last
        if last == b"\n":
            owed = b""
        elif last == b"\r":
            owed = b"\n"
        else:
            owed = _line_end(first) or default_eol
    return written


def _show(line: bytes | None) -> str:
    if line is None:
        return "(a first line too long to be a header)"
    return repr(line[:120].decode("utf-8", "replace")) + ("..." if len(line) > 120 else "")


def html_part(urls: Sequence[str], content_types: Sequence[str | None]) -> str | None:
    """The first URL whose part the origin served as ``text/html`` (an error page, a login page), or None."""
    for url, content_type in zip(urls, content_types, strict=True):
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media in ("text/html", "application/xhtml+xml"):
            return url
    return None


def _read_head(part: BinaryIO, chunk_bytes: int, cap: int) -> _Head:
    """Read until a non-blank byte follows the first newline (the part has data after its first
    line), or the part ends, or ``cap`` bytes are held. Each read asks for at most the cap."""
    buf = bytearray()
    bom_checked = False
    newline_at = -1
    scanned = 0  # bytes of ``buf`` already searched, so each byte is looked at once
    while len(buf) < cap:
        piece = part.read(min(chunk_bytes, cap - len(buf)))
        if not piece:
            return _Head(bytes(buf), complete=True)  # shorter than a BOM: nothing to strip
        buf += piece
        if not bom_checked:
            if len(buf) < len(_BOM):
                continue
            bom_checked = True
            if buf.startswith(_BOM):
                del buf[: len(_BOM)]
        if newline_at < 0:
            newline_at = buf.find(b"\n", scanned)
        if newline_at >= 0 and buf[max(newline_at + 1, scanned) :].strip(_BLANK):
            break
        scanned = len(buf)
    return _Head(bytes(buf), complete=False)


def _line_key(line: bytes) -> bytes:
    """A header line without its line ending, for comparison."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def _line_end(line: bytes | None) -> bytes | None:
    if line is None or not line.endswith(b"\n"):
        return None
    return b"\r\n" if line.endswith(b"\r\n") else b"\n"


def _copy_rest(part: BinaryIO, out: BinaryIO, chunk_bytes: int) -> tuple[int, bytes]:
    """Copy the rest of ``part`` to ``out``; return bytes copied and the last byte (b"" if none)."""
    copied = 0
    last = b""
    while chunk := part.read(chunk_bytes):
        _write(out, chunk)
        copied += len(chunk)
        last = chunk[-1:]
    return copied, last


def _write(out: BinaryIO, data: bytes) -> None:
    if data:
        out.write(data)


def _rewind(part: BinaryIO) -> None:
    # Callers download into temp files and hand them over positioned at the end; merging from
    # there would silently store nothing.
    if part.seekable():
        part.seek(0)


# --- naming the files of a ``none`` group -------------------------------------------------------

_UNSAFE_CHARS = re.compile(r'[/\\<>:"|?*]')  # path separators and what Windows forbids in a name
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}  # controls, bidi overrides, surrogates...
_MAX_EXT_CHARS = 16  # a longer "extension" is just part of the name when truncating


def name_files(urls: Sequence[str]) -> list[str]:
    """Return one unique, safe file name per URL, in order; the same list always gives the same names.

    A name is the URL path's last segment, percent-decoded, with path separators, Windows-reserved
    characters and control characters replaced by ``_``, leading/trailing dots and spaces removed
    (no hidden files, never ``.``/``..``), at most 255 UTF-8 bytes (extension kept); ``file`` when
    nothing is left. Names that collide (ignoring case, for case-insensitive filesystems) all get
    their zero-based position as a prefix, e.g. ``0003-bulk_data_e.html``; so does a file named like the
    group's index (``INDEX_NAME``), which keeps that name to itself.
    """
    names = [_name_of(url) for url in urls]
    counts = Counter(name.casefold() for name in names)
    counts[INDEX_NAME.casefold()] += 1  # never handed to a file
    taken = {name.casefold() for name in names if counts[name.casefold()] == 1} | {INDEX_NAME.casefold()}
    width = max(4, len(str(len(names) - 1)))
    result: list[str] = []
    for index, name in enumerate(names):
        if counts[name.casefold()] == 1:
            result.append(name)
            continue
        attempt = 0
        while True:  # a prefixed name can still clash with a URL literally named "0003-x"
            prefix = f"{index:0{width}d}-" + (f"{attempt}-" if attempt else "")
            candidate = _fit(prefix, name)
            if candidate.casefold() not in taken:
                break
            attempt += 1
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def _name_of(url: str) -> str:
    try:
        path = urlsplit(url).path
    except ValueError:  # e.g. a malformed IPv6 host; the path is still what follows the last '/'
        path = url.split("#", 1)[0].split("?", 1)[0]
    segment = unquote(path.rsplit("/", 1)[-1], errors="replace")
    cleaned = "".join("_" if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in segment)
    cleaned = _UNSAFE_CHARS.sub("_", cleaned).strip(" .")
    return _fit("", cleaned) or "file"


def _fit(prefix: str, name: str) -> str:
    """``prefix + name``, with ``name`` shortened (keeping its extension) to fit MAX_NAME_BYTES."""
    budget = MAX_NAME_BYTES - len(prefix.encode("utf-8"))
    if len(name.encode("utf-8")) <= budget:
        return prefix + name
    stem, dot, ext = name.rpartition(".")
    if dot and stem and len(ext) <= _MAX_EXT_CHARS:
        suffix = "." + ext
        return prefix + _truncate(stem, budget - len(suffix.encode("utf-8"))) + suffix
    return prefix + _truncate(name, budget).rstrip(" .")


def _truncate(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
