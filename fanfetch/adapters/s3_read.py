"""Reading what a run left in S3 (``fanfetch report``): the folders under a prefix and one object downloaded to a
file. Errors become StoreErrors classified by their code, worded as botocore words them."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import error_code
from fanfetch.adapters.s3 import PERMANENT_CODES
from fanfetch.errors import PermanentStoreError, RetryableStoreError, StoreError

__all__ = ["S3Reader"]


class S3Reader:
    """One bucket, read through ``client``."""

    def __init__(self, client: Any, bucket: str):
        self._client = client
        self.bucket = bucket

    def folders(self, root: str, start: str = "") -> list[str]:
        """The names of the folders (common prefixes at ``/``) right under ``root`` (ending in ``/``) that begin
        with ``start``, sorted."""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root + start,
                                                                            Delimiter="/")
            return sorted({folder["Prefix"][len(root):].rstrip("/")
                           for page in pages for folder in page.get("CommonPrefixes", [])})
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc) from exc

    def download(self, key: str, path: str) -> None:
        """The object ``key`` into the file ``path``."""
        try:
            self._client.download_file(self.bucket, key, path)
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc) from exc


def _classify(exc: ClientError | BotoCoreError) -> StoreError:
    code = error_code(exc) if isinstance(exc, ClientError) else ""
    return (PermanentStoreError if code in PERMANENT_CODES else RetryableStoreError)(str(exc))
