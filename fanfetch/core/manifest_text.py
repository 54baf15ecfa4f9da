"""Bytes -> text lines for every manifest format: BOM, CRLF, the 1 MiB line limit and UTF-8 checks.

Shared by the JSON Lines, CSV and job-spec readers so each rejects the same bad input the same way.
"""

from __future__ import annotations

from fanfetch.errors import ManifestError

__all__ = ["MAX_LINE_BYTES", "decode_lines", "decode_text", "excerpt"]

MAX_LINE_BYTES = 1024 * 1024  # one manifest line; the "a 10 MB line" must fail fast and small
_BOM = b"\xef\xbb\xbf"
_EXCERPT_CHARS = 60


def excerpt(value: object) -> str:
    """``repr(value)`` cut to a few dozen characters, so an error message stays one short line."""
    text = repr(value)
    if len(text) <= _EXCERPT_CHARS:
        return text
    return f"{text[:_EXCERPT_CHARS]}... ({len(text):,} characters)"


def decode_text(data: bytes, *, source: str) -> str:
    """The UTF-8 text of ``data`` (a leading BOM dropped); raise ManifestError on an over-long line
    or on bytes that are not UTF-8, naming the line and column."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if len(data) > MAX_LINE_BYTES:  # only then can a single line be too long
        _check_line_lengths(data, source=source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise ManifestError(
            source,
            f"not UTF-8: byte 0x{bad} at column {column} (byte {exc.start - line_start + 1} of the line)",
            line=line,
        ) from None


def decode_lines(data: bytes, *, source: str) -> list[str]:
    """The lines of ``data`` without their ``\\n`` / ``\\r\\n`` endings (see ``decode_text``)."""
    lines = decode_text(data, source=source).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_line_lengths(data: bytes, *, source: str) -> None:
    start = 0
    line = 1
    while start <= len(data):
        end = data.find(b"\n", start)
        if end < 0:
            end = len(data)
        if end - start > MAX_LINE_BYTES:
            raise ManifestError(
                source,
                f"line is {end - start:,} bytes long, over the {MAX_LINE_BYTES:,}-byte (1 MiB) limit",
                line=line,
            )
        start = end + 1
        line += 1
