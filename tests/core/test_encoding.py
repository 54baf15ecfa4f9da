"""fanfetch.core.encoding: which codings are decoded or kept, and a decoder that notices a cut stream."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanfetch.core.encoding import (
    ACCEPT_ENCODING,
    BodyPlan,
    CorruptEncoding,
    StreamDecoder,
    TruncatedEncoding,
    UnsupportedEncoding,
    parse_codings,
    plan_body,
)

BODY = b"date,temp\n" + b"".join(b"2020-01-%02d,%d\n" % (d % 28 + 1, d) for d in range(5000))


def _decode(plan: BodyPlan, raw: bytes, chunk: int = 4096, max_out: int = 1 << 20) -> bytes:
    decoder = StreamDecoder(plan, max_out=max_out)
    out = b"".join(piece for i in range(0, len(raw), chunk) for piece in decoder.feed(raw[i : i + chunk]))
    return out + b"".join(decoder.finish())


def test_we_advertise_exactly_the_codings_we_decode():
    # GIVEN the advertised header / THEN each coding in it is planned for decoding, nothing else
    for coding in ACCEPT_ENCODING.split(", "):
        assert plan_body("https://o.example/a.csv", coding).decode == (coding,)
    assert parse_codings("gzip, identity, X-Gzip") == ("gzip", "gzip")


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "snappy"])
def test_a_coding_we_cannot_decode_is_refused_by_name(coding):
    # WHEN the plan is made for a coding we never advertised / THEN it is refused, naming the coding
    with pytest.raises(UnsupportedEncoding) as caught:
        plan_body("https://o.example/a.csv", coding)
    assert coding.split(", ")[-1] in str(caught.value)


@pytest.mark.parametrize(
    ("url", "content_type"),
    [("https://o.example/data/2020.csv.gz", None), ("https://o.example/a.tgz?sig=1", None),
     ("https://o.example/download?id=1", "application/gzip"), ("https://o.example/x", "application/x-gzip; q=1")],
)
def test_a_published_gzip_file_with_content_encoding_gzip_is_kept_as_published(url, content_type):
    # GIVEN a file that is itself gzip (by name or media type) served with Content-Encoding: gzip
    plan = plan_body(url, "gzip", content_type)
    # THEN it is stored as published (nothing decoded), like curl and wget do
    assert plan.identity and plan.kept_encoding == "gzip"


def test_a_csv_compressed_on_the_fly_is_decoded():
    plan = plan_body("https://o.example/2020.csv", "gzip", "text/csv")
    assert plan.decode == ("gzip",) and plan.kept_encoding is None


@pytest.mark.parametrize(
    "encode",
    [gzip.compress, zlib.compress, lambda b: zlib.compress(b)[2:-4],  # raw deflate, as some servers send it
     lambda b: gzip.compress(b[:1000]) + gzip.compress(b[1000:])],  # concatenated gzip members
    ids=["gzip", "deflate", "raw-deflate", "gzip-members"],
)
def test_encoded_bodies_decode_to_the_original_in_any_chunking(encode):
    raw = encode(BODY)
    coding = "gzip" if raw[:2] == b"\x1f\x8b" else "deflate"
    for chunk in (1, 7, 4096, len(raw)):
        assert _decode(BodyPlan(decode=(coding,)), raw, chunk=chunk) == BODY


def test_two_codings_are_undone_in_reverse_order():
    raw = zlib.compress(gzip.compress(BODY))  # gzip applied first, then deflate: "gzip, deflate"
    assert _decode(plan_body("https://o.example/a", "gzip, deflate"), raw) == BODY


@settings(deadline=None)  # each example is fast; under a loaded CPU one took 920 ms
@given(cut=st.integers(min_value=1, max_value=400))
def test_a_gzip_stream_cut_anywhere_is_truncated_never_complete(cut):
    # GIVEN a gzip body cut short by any number of bytes (trailer included)
    raw = gzip.compress(BODY[:3000])
    # WHEN decoded / THEN the decoder says it was cut short
    with pytest.raises(TruncatedEncoding):
        _decode(BodyPlan(decode=("gzip",)), raw[: len(raw) - cut])


def test_a_deflate_stream_cut_short_is_truncated():
    raw = zlib.compress(BODY)
    with pytest.raises(TruncatedEncoding):
        _decode(BodyPlan(decode=("deflate",)), raw[: len(raw) // 2])


def test_garbage_declared_as_gzip_is_corrupt():
    with pytest.raises(CorruptEncoding):
        _decode(BodyPlan(decode=("gzip",)), b"<html>not gzip at all</html>")


def test_an_empty_encoded_body_is_empty_and_trailing_garbage_after_a_complete_stream_is_ignored():
    assert _decode(BodyPlan(decode=("gzip",)), b"") == b""
    assert _decode(BodyPlan(decode=("gzip",)), gzip.compress(b"abc") + b"\x00\x00junk") == b"abc"


def test_a_bomb_never_expands_past_max_out_per_piece():
    # GIVEN 16 MiB of zeros in a few KiB of gzip / WHEN fed in one chunk with max_out 64 KiB
    raw = gzip.compress(bytes(16 * 2**20), compresslevel=9)
    decoder = StreamDecoder(BodyPlan(decode=("gzip",)), max_out=65536)
    sizes = [len(p) for p in decoder.feed(raw)] + [len(p) for p in decoder.finish()]
    # THEN every piece is bounded and together they are the whole body
    assert max(sizes) <= 65536 and sum(sizes) == 16 * 2**20
