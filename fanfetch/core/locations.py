"""Locations given as ``s3://bucket/key`` URIs, parsed without touching S3."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["parse_s3_uri"]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix). Raises ValueError when it is not such a URI."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parts.netloc, parts.path.lstrip("/")
