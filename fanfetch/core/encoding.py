"""Content-Encoding as the origin meant it: which codings we advertise and decode, what a body that
is itself a compressed file becomes, and an incremental decoder that notices a stream cut short.

Pure (stdlib ``zlib``): every HTTP engine (requests today, pycurl tomorrow) reads the body raw and
runs it through here, so the decisions live in one place.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "ACCEPT_ENCODING",
    "SUPPORTED_CODINGS",
    "BodyPlan",
    "ContentEncodingError",
    "UnsupportedEncoding",
    "CorruptEncoding",
    "TruncatedEncoding",
    "StreamDecoder",
    "plan_body",
    "parse_codings",
]

SUPPORTED_CODINGS = ("gzip", "deflate")  # what the stdlib decodes; br and zstd would need extra packages
ACCEPT_ENCODING = ", ".join(SUPPORTED_CODINGS)  # advertise exactly what we can decode
_ALIASES = {"x-gzip": "gzip"}
_COMPRESSED_SUFFIXES = (".gz", ".tgz", ".gzip")  # a published file that is itself gzip
_GZIP_MEDIA_TYPES = frozenset(
    {"application/gzip", "application/x-gzip", "application/x-gunzip", "application/gzip-compressed",
     "application/x-tgz"}
)
_DEFAULT_OUT_BYTES = 1 << 20  # the most decoded bytes produced per step (a bomb never expands at once)


class ContentEncodingError(ValueError):
    """Base: the body's Content-Encoding cannot be turned into the bytes the origin meant."""


class UnsupportedEncoding(ContentEncodingError):
    """A coding we did not advertise and cannot decode (br, zstd, compress, ...): permanent."""


class CorruptEncoding(ContentEncodingError):
    """The body is not valid data in its declared coding: permanent."""


class TruncatedEncoding(ContentEncodingError):
    """The compressed stream ended before its end marker: the body was cut short (retryable)."""


@dataclass(frozen=True)
class BodyPlan:
    """What to do with a response body: decode these codings (outermost first), or keep it as sent."""

    decode: tuple[str, ...]  # in decoding order (the reverse of the order they were applied)
    kept_encoding: str | None = None  # a compressed file kept as published: its coding ("gzip")

    @property
    def identity(self) -> bool:
        return not self.decode


def parse_codings(header: str | None) -> tuple[str, ...]:
    """The codings of a Content-Encoding header in the order applied, ``identity`` dropped."""
    if not header:
        return ()
    codings = (part.strip().lower() for part in header.split(","))
    return tuple(_ALIASES.get(c, c) for c in codings if c and c != "identity")


def plan_body(url: str, content_encoding: str | None, content_type: str | None = None) -> BodyPlan:
    """Decide how a 2xx body becomes the stored bytes; raise UnsupportedEncoding when it cannot.

    Decision (README "Content-Encoding"): a file that is published compressed — its URL path ends in
    ``.gz``/``.tgz``/``.gzip`` or its Content-Type is a gzip type — served with
    ``Content-Encoding: gzip`` is stored *as published* (the ``.gz`` bytes), like curl and wget do;
    the manifest's sha256/size then describe that file. Every other encoded body is decoded.
    """
    codings = parse_codings(content_encoding)
    if not codings:
        return BodyPlan(decode=())
    unsupported = [c for c in codings if c not in SUPPORTED_CODINGS]
    if unsupported:
        raise UnsupportedEncoding(
            f"Content-Encoding {', '.join(unsupported)} is not supported "
            f"(fanfetch asks for {ACCEPT_ENCODING} only)"
        )
    if codings == ("gzip",) and _published_gzip(url, content_type):
        return BodyPlan(decode=(), kept_encoding="gzip")
    return BodyPlan(decode=tuple(reversed(codings)))


def _published_gzip(url: str, content_type: str | None) -> bool:
    try:
        path = urlsplit(url).path.lower()
    except ValueError:
        path = ""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return path.endswith(_COMPRESSED_SUFFIXES) or media in _GZIP_MEDIA_TYPES


class _Inflater:
    """One coding, incrementally: gzip (multi-member) or deflate (zlib-wrapped or, as some servers
    send it, raw). ``max_out`` bounds every piece produced."""

    def __init__(self, coding: str, max_out: int):
        self._coding = coding
        self._max_out = max_out
        self._raw_fallback = coding == "deflate"  # may still switch to raw deflate
        self._started = False  # some input was accepted
        self._trailing = False  # bytes after the last gzip member that are not another member: ignored
        self._head = b""  # deflate: input fed before the framing was settled
        self._after = b""  # gzip: bytes after a complete member, too few to tell whether another follows
        self._obj = self._new()

    def _new(self, wbits: int | None = None) -> zlib._Decompress:
        if wbits is None:
            wbits = 16 + zlib.MAX_WBITS if self._coding == "gzip" else zlib.MAX_WBITS
        return zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._trailing:
            return
        if data:
            self._started = True
        if self._raw_fallback:  # the 2-byte zlib header is not checked yet: keep what came for a restart
            self._head += data
        while True:
            if self._obj.eof:
                data = self._after + data  # what follows a complete stream: another gzip member?
                rest = data.lstrip(b"\x00")
                if self._coding == "gzip" and len(rest) < 2 and rest in (b"", b"\x1f"):
                    self._after = data  # too few bytes to tell yet
                    return
                self._after = b""
                if self._coding == "gzip" and rest[:2] == b"\x1f\x8b":
                    self._obj, data = self._new(), rest  # concatenated gzip members
                else:
                    self._trailing = True  # trailing garbage after a complete stream: ignored, as gzip(1) does
                    return
            try:
                piece = self._obj.decompress(data, self._max_out)
            except zlib.error as exc:
                if self._raw_fallback:  # not zlib-wrapped: raw deflate, from the first byte again
                    self._raw_fallback, data, self._head = False, self._head, b""
                    self._obj = self._new(-zlib.MAX_WBITS)
                    continue
                raise CorruptEncoding(f"body is not valid {self._coding} data ({exc})") from None
            if self._raw_fallback and len(self._head) >= 2:
                self._raw_fallback, self._head = False, b""  # a valid zlib header: the framing is settled
            if piece:
                yield piece
            if self._obj.eof:
                data = self._obj.unused_data
                if not data:
                    return
                continue
            data = self._obj.unconsumed_tail
            if not data and len(piece) < self._max_out:
                return  # all input consumed and all output drained: wait for more input

    def finish(self) -> Iterator[bytes]:
        if not self._started:
            return  # an empty body: nothing was encoded (servers send empty 200s with Content-Encoding)
        if not self._obj.eof and not self._trailing:
            raise TruncatedEncoding(f"{self._coding} stream ended early: the body was cut short")
        yield from ()


class StreamDecoder:
    """Turn raw body chunks into the decoded bytes the plan asks for; ``finish()`` raises
    TruncatedEncoding if a compressed stream did not reach its end. Pieces are at most ``max_out``."""

    def __init__(self, plan: BodyPlan, *, max_out: int = _DEFAULT_OUT_BYTES):
        self._stages = [_Inflater(coding, max_out) for coding in plan.decode]

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces for one raw chunk (nothing buffered beyond zlib's own state)."""
        yield from self._through(0, data)

    def finish(self) -> Iterator[bytes]:
        """The last decoded pieces; raises TruncatedEncoding when the stream was cut short."""
        for index, stage in enumerate(self._stages):
            for piece in stage.finish():
                yield from self._through(index + 1, piece)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._stages):
            if data:
                yield data
            return
        for piece in self._stages[index].feed(data):
            yield from self._through(index + 1, piece)
