"""S3 as an ``ObjectStore`` (and as a place manifests are read from), via boto3's transfer manager.

Uploads are one PUT or a completed multipart upload (all or nothing), streamed from a spooled
file so memory stays bounded; the sha256 of the object and the fingerprint of the group definition
that produced it ride along as object metadata (``x-amz-meta-sha256``, ``x-amz-meta-fanfetch-fingerprint``).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import threading
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from fanfetch.adapters.aws_errors import error_code
from fanfetch.adapters.backoff import Backoff
from fanfetch.core.locations import parse_s3_uri
from fanfetch.errors import ManifestError, OutputExists, PermanentStoreError, RetryableStoreError, StoreError
from fanfetch.ports import StoredObject

__all__ = ["S3Store", "read_s3_bytes", "classify_client_error", "PERMANENT_CODES"]

PERMANENT_CODES = frozenset(
    {"AccessDenied", "NoSuchBucket", "InvalidBucketName", "AllAccessDisabled", "InvalidAccessKeyId",
     "SignatureDoesNotMatch", "KeyTooLongError", "InvalidObjectState", "AccountProblem"}
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# 409: another conditional write to the key was in progress. AWS: retry a PutObject; re-initiate a multipart
# upload and upload its parts again. Both are what a second upload_file does; it then usually meets 412
# (the other writer won: OutputExists) or stores. botocore's retry modes do not retry a 409.
_CONFLICT_CODES = frozenset({"ConditionalRequestConflict"})
CONFLICT_BACKOFF = Backoff(max_attempts=5, base_s=0.1, max_s=2.0)
_SHA_METADATA = "sha256"
_FINGERPRINT_METADATA = "fanfetch-fingerprint"
_IF_MATCH = "fanfetch-if-match"  # carried to the hooks inside Metadata, removed before the request is built
# 16 MiB parts: big enough for few requests, small enough for bounded memory (a few parts in flight).
DEFAULT_TRANSFER = TransferConfig(
    multipart_threshold=64 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=4, use_threads=True
)


def content_type_of(key: str) -> str:
    """The Content-Type of an output from its key's extension (``.csv`` → ``text/csv``), as browsers and
    ``aws s3 cp`` expect; ``application/octet-stream`` when the extension says nothing."""
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or "application/octet-stream"


def _cause(exc: BaseException) -> BaseException | None:
    # boto3's upload_file re-raises a ClientError as S3UploadFailedError (implicitly chained).
    return exc if isinstance(exc, (ClientError, BotoCoreError)) else (exc.__cause__ or exc.__context__)


def _error_code(exc: BaseException) -> str:
    cause = _cause(exc)
    return error_code(cause) if isinstance(cause, ClientError) else ""


def classify_client_error(exc: BaseException, what: str) -> StoreError:
    """Translate a botocore error (or one boto3 wrapped) into our tree, by error code, once."""
    cause = _cause(exc)
    if isinstance(cause, ClientError):
        code = _error_code(cause)
        if code in ("PreconditionFailed", "412"):
            return OutputExists(f"{what}: already stored (conditional write refused)")
        if code in PERMANENT_CODES:
            return PermanentStoreError(f"{what}: {code}")
        return RetryableStoreError(f"{what}: {code or 'error'}")
    return RetryableStoreError(f"{what}: {type(cause or exc).__name__}: {cause or exc}")


_WRITE_METADATA = "fanfetch-write"  # "create" (conditional) or "replace" (refresh of a changed output)


class _ConditionalWrites:
    """botocore hooks that make output writes conditional (``If-None-Match: *``, or ``If-Match: <ETag>``).

    boto3's transfer manager does not pass ``IfNoneMatch``/``IfMatch`` through (they are not in its allowed
    upload arguments), so the hooks add them to the call that creates the object: a PutObject whose
    metadata says ``fanfetch-write: create`` (or carries the ETag to replace), or the
    CompleteMultipartUpload of an upload created with that metadata (its UploadId is remembered between
    the two calls, which may run on other threads). Plain ``put_bytes`` writes and refresh ``replace``
    writes stay unconditional.
    """

    def __init__(self, client: Any):
        self._uploads: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        events = client.meta.events
        events.register_first("before-parameter-build.s3.PutObject", self._put, unique_id="fanfetch-cond-put")
        events.register_first("before-parameter-build.s3.CreateMultipartUpload", self._create,
                              unique_id="fanfetch-cond-create")
        events.register_first("after-call.s3.CreateMultipartUpload", self._created, unique_id="fanfetch-cond-created")
        events.register_first("before-parameter-build.s3.CompleteMultipartUpload", self._complete,
                              unique_id="fanfetch-cond-complete")

    @staticmethod
    def _condition(params: dict[str, Any]) -> tuple[str, str] | None:
        """The precondition a write carries in its metadata (taken out of it), or None."""
        metadata = params.get("Metadata") or {}
        etag = metadata.pop(_IF_MATCH, None)
        if etag is not None:
            return "IfMatch", etag
        if metadata.get(_WRITE_METADATA) == "create":
            return "IfNoneMatch", "*"
        return None

    def _put(self, params: dict[str, Any], **_: Any) -> None:
        condition = self._condition(params)
        if condition is not None:
            params.setdefault(*condition)

    def _create(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fanfetch_condition"] = self._condition(params)

    def _created(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("fanfetch_condition") and parsed.get("UploadId"):
            with self._lock:
                self._uploads[parsed["UploadId"]] = context["fanfetch_condition"]

    def _complete(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            condition = self._uploads.pop(params.get("UploadId", ""), None)
        if condition is not None:
            params.setdefault(*condition)


class S3Store:
    """Implements ``fanfetch.ports.ObjectStore`` on ``s3://bucket/prefix``.

    Outputs are written with ``If-None-Match: *``: of two deliveries of one group only one writes;
    the other gets ``OutputExists`` and counts the group as already done.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, transfer: TransferConfig = DEFAULT_TRANSFER,
                 conflict_backoff: Backoff = CONFLICT_BACKOFF):
        self._hooks = _ConditionalWrites(client)
        self._conflict_backoff = conflict_backoff
        self._client = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._transfer = transfer

    def _key(self, key: str) -> str:
        return self.prefix + key

    def head(self, key: str) -> StoredObject | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                return None
            raise classify_client_error(exc, f"head s3://{self.bucket}/{self._key(key)}") from exc
        except BotoCoreError as exc:
            raise classify_client_error(exc, f"head s3://{self.bucket}/{self._key(key)}") from exc
        metadata = response.get("Metadata") or {}
        return StoredObject(key=key, size=int(response["ContentLength"]), sha256=metadata.get(_SHA_METADATA),
                            fingerprint=metadata.get(_FINGERPRINT_METADATA), version=response.get("ETag"))

    def put_file(self, key: str, path: str, *, sha256: str, overwrite: bool = False, fingerprint: str | None = None,
                 replaces: str | None = None) -> StoredObject:
        """Upload ``path``: ``If-None-Match: *`` by default, ``If-Match: <replaces>`` to replace a stale object
        (S3 answers 412 when another writer changed it first: ``OutputExists``), unconditional with ``overwrite``."""
        size = os.path.getsize(path)
        metadata = {_SHA_METADATA: sha256,
                    _WRITE_METADATA: "replace" if overwrite or replaces is not None else "create"}
        if fingerprint is not None:
            metadata[_FINGERPRINT_METADATA] = fingerprint
        backoff = self._conflict_backoff
        for attempt in backoff.attempts():
            extra = dict(metadata)  # the hooks take the If-Match out of the metadata: a fresh copy per attempt
            if replaces is not None and not overwrite:
                extra[_IF_MATCH] = replaces
            try:
                self._client.upload_file(path, self.bucket, self._key(key),
                                         ExtraArgs={"Metadata": extra, "ContentType": content_type_of(key)},
                                         Config=self._transfer)
            except Exception as exc:  # boto3 wraps ClientError in S3UploadFailedError; classify its cause
                if _error_code(exc) in _CONFLICT_CODES and not backoff.is_last(attempt):
                    backoff.pause(attempt)
                    continue
                raise classify_client_error(exc, f"upload s3://{self.bucket}/{self._key(key)}") from exc
            break
        return StoredObject(key=key, size=size, sha256=sha256, fingerprint=fingerprint)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream",
                  fingerprint: str | None = None) -> None:
        extra: dict[str, Any] = {}
        if fingerprint is not None:
            extra["Metadata"] = {_SHA_METADATA: hashlib.sha256(data).hexdigest(), _FINGERPRINT_METADATA: fingerprint}
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type,
                                    **extra)
        except (ClientError, BotoCoreError) as exc:
            raise classify_client_error(exc, f"put s3://{self.bucket}/{self._key(key)}") from exc


def read_s3_bytes(client: Any, uri: str) -> bytes:
    """The bytes of a manifest at ``s3://bucket/key``; ManifestError naming the URI when unreachable."""
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as exc:
        raise ManifestError(uri, str(exc)) from None
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ManifestError(uri, f"cannot read manifest: {code}") from None
    except BotoCoreError as exc:
        raise ManifestError(uri, f"cannot read manifest: {exc}") from None
