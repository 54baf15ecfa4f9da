"""The S3 store under moto: uploads with their sha256, head, and error classification."""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from fanfetch.adapters.s3 import S3Store, read_s3_bytes
from fanfetch.errors import ManifestError, PermanentStoreError, RetryableStoreError


@pytest.fixture
def s3(aws_env):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="out")
        yield client


def test_put_file_stores_under_the_prefix_with_sha256_metadata(s3, tmp_path):
    path = tmp_path / "merged"
    path.write_bytes(b"h\n1\n")
    store = S3Store(s3, "out", "runs/1")
    stored = store.put_file("stations/1.csv", str(path), sha256="abc")
    assert s3.get_object(Bucket="out", Key="runs/1/stations/1.csv")["Body"].read() == b"h\n1\n"
    assert stored.size == 4
    assert store.head("stations/1.csv").sha256 == "abc"
    assert store.head("stations/2.csv") is None


def test_a_missing_bucket_is_permanent(s3, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(PermanentStoreError):
        S3Store(s3, "no-such-bucket").put_file("k", str(path), sha256="s")


def test_throttling_is_retryable(s3):
    store = S3Store(s3, "out")
    with Stubber(s3) as stub:
        stub.add_client_error("put_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(RetryableStoreError):
            store.put_bytes("k", b"x")


def test_an_unreachable_manifest_names_its_uri(s3):
    with pytest.raises(ManifestError) as caught:
        read_s3_bytes(s3, "s3://out/missing.jsonl")
    assert str(caught.value).startswith("s3://out/missing.jsonl: ")


def test_a_second_write_of_an_output_is_refused_and_the_first_is_kept(s3, tmp_path):
    # GIVEN an output already stored
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    store = S3Store(s3, "out")
    store.put_file("k.csv", str(first), sha256="1")
    # WHEN another delivery tries to store the same key
    from fanfetch.errors import OutputExists

    with pytest.raises(OutputExists):
        store.put_file("k.csv", str(second), sha256="2")
    # THEN the first output is untouched; plain put_bytes (results manifests) still overwrite
    assert s3.get_object(Bucket="out", Key="k.csv")["Body"].read() == b"first"
    store.put_bytes("results.jsonl", b"1")
    store.put_bytes("results.jsonl", b"2")
    assert s3.get_object(Bucket="out", Key="results.jsonl")["Body"].read() == b"2"


def test_a_multipart_output_is_conditional_too(s3, tmp_path):
    from boto3.s3.transfer import TransferConfig

    from fanfetch.errors import OutputExists

    big = tmp_path / "big"
    big.write_bytes(b"x" * (6 * 2**20))
    store = S3Store(s3, "out", transfer=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20))
    store.put_file("big.bin", str(big), sha256="s")
    assert store.head("big.bin").size == 6 * 2**20
    with pytest.raises(OutputExists):
        store.put_file("big.bin", str(big), sha256="s")


@pytest.mark.parametrize("size", [10, 6 * 2**20])
def test_overwrite_replaces_a_changed_output_single_part_and_multipart(s3, tmp_path, size):
    from boto3.s3.transfer import TransferConfig

    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"o" * size)
    new.write_bytes(b"n" * size)
    store = S3Store(s3, "out", transfer=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20))
    store.put_file("k.bin", str(old), sha256="old")
    store.put_file("k.bin", str(new), sha256="new", overwrite=True)
    assert s3.get_object(Bucket="out", Key="k.bin")["Body"].read(1) == b"n"
    assert store.head("k.bin").sha256 == "new"


# --- 409 ConditionalRequestConflict: AWS's answer while another conditional write to the key is in progress ---


def _conflicting_store(s3, clock):
    from fanfetch.adapters.backoff import Backoff

    return S3Store(s3, "out", conflict_backoff=Backoff(max_attempts=5, base_s=0.1, max_s=2.0, clock=clock,
                                                         rand=lambda: 1.0))


def _conflict(stub: Stubber) -> None:
    stub.add_client_error("put_object", service_error_code="ConditionalRequestConflict", http_status_code=409,
                          service_message="A conflicting conditional operation is currently in progress")


def test_a_409_conflict_is_retried_and_the_write_then_stores(s3, tmp_path):
    from tests.fakes import FakeClock

    # GIVEN S3 answering the first conditional PUT with 409 ConditionalRequestConflict, then storing it
    path = tmp_path / "merged"
    path.write_bytes(b"h\n1\n")
    clock = FakeClock()
    store = _conflicting_store(s3, clock)
    with Stubber(s3) as stub:
        _conflict(stub)
        stub.add_response("put_object", {"ETag": '"e"'})
        # WHEN the output is written
        stored = store.put_file("k.csv", str(path), sha256="abc")
        stub.assert_no_pending_responses()
    # THEN it is stored after one pause on the injected clock, and the group does not fail
    assert stored.size == 4 and clock.sleeps == [0.1]


def test_a_409_conflict_then_412_means_the_other_writer_won(s3, tmp_path):
    from fanfetch.errors import OutputExists
    from tests.fakes import FakeClock

    # GIVEN a concurrent writer of the same output that completes while we get 409
    path = tmp_path / "merged"
    path.write_bytes(b"x")
    store = _conflicting_store(s3, FakeClock())
    with Stubber(s3) as stub:
        _conflict(stub)
        stub.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412)
        # WHEN written / THEN the retry meets the stored output: already done, as a duplicate delivery is
        with pytest.raises(OutputExists):
            store.put_file("k.csv", str(path), sha256="abc")


def test_a_conflict_that_persists_fails_retryable_after_bounded_attempts(s3, tmp_path):
    from tests.fakes import FakeClock

    path = tmp_path / "merged"
    path.write_bytes(b"x")
    clock = FakeClock()
    store = _conflicting_store(s3, clock)
    with Stubber(s3) as stub:
        for _ in range(5):
            _conflict(stub)
        with pytest.raises(RetryableStoreError, match="ConditionalRequestConflict"):
            store.put_file("k.csv", str(path), sha256="abc")
        stub.assert_no_pending_responses()
    assert len(clock.sleeps) == 4  # five attempts, four pauses


def test_the_fingerprint_rides_along_as_object_metadata_and_head_reports_it(s3, tmp_path):
    # GIVEN an output stored with the fingerprint of its definition
    path = tmp_path / "merged"
    path.write_bytes(b"h\n1\n")
    store = S3Store(s3, "out", "p")
    store.put_file("k.csv", str(path), sha256="abc", fingerprint="v1-0123")
    # THEN it is x-amz-meta-fanfetch-fingerprint on the object, and head gives it back with the ETag
    raw = s3.head_object(Bucket="out", Key="p/k.csv")
    assert raw["Metadata"] == {"sha256": "abc", "fanfetch-fingerprint": "v1-0123", "fanfetch-write": "create"}
    head = store.head("k.csv")
    assert (head.fingerprint, head.version) == ("v1-0123", raw["ETag"])
    # AND an object someone else wrote has no fingerprint
    s3.put_object(Bucket="out", Key="p/theirs.csv", Body=b"x")
    assert store.head("theirs.csv").fingerprint is None


class _AwsIfMatchOnComplete:
    """moto honours If-Match on PutObject but ignores it on CompleteMultipartUpload; AWS answers 412
    PreconditionFailed there when the object's ETag differs (or 404 NoSuchKey when there is none). This
    double does what AWS does, in front of moto, and records the header it saw."""

    def __init__(self, client):
        self.seen: list[str | None] = []
        self._peek = boto3.client("s3", region_name="us-east-1")
        client.meta.events.register_first("before-send.s3.CompleteMultipartUpload", self._check)

    def _check(self, request, **_):
        from botocore.awsrequest import AWSResponse

        expected = request.headers.get("If-Match")
        self.seen.append(expected.decode() if isinstance(expected, bytes) else expected)
        if expected is None:
            return None
        key = urlsplit(request.url).path.rsplit("/", 1)[-1]  # the tests' keys have no folder
        current = self._peek.head_object(Bucket="out", Key=key)["ETag"]
        if current.strip('"') == self.seen[-1].strip('"'):
            return None
        body = b"<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you " \
               b"specified did not hold</Message></Error>"

        class _Raw:
            def stream(self, **_):
                yield body

        response = AWSResponse(request.url, 412, {"Content-Type": "application/xml"}, _Raw())
        # Every before-send handler runs: point the request where moto's handler (after this one) does not
        # answer, so the refused completion never reaches moto. Nothing is sent: this response is used.
        request.url = "http://127.0.0.1:9/refused-by-the-double"
        return response


@pytest.mark.parametrize("size", [10, 6 * 2**20])
def test_replacing_a_stale_object_is_conditional_on_its_etag_single_part_and_multipart(s3, tmp_path, size):
    from boto3.s3.transfer import TransferConfig

    from fanfetch.errors import OutputExists

    aws = _AwsIfMatchOnComplete(s3)
    # GIVEN a stale object whose ETag a worker read, then someone else replaced it
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"o" * size)
    new.write_bytes(b"n" * size)
    store = S3Store(s3, "out", transfer=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20))
    store.put_file("k.bin", str(old), sha256="old", fingerprint="v1-old")
    seen = store.head("k.bin").version
    s3.put_object(Bucket="out", Key="k.bin", Body=b"theirs")
    # WHEN the worker replaces what it saw
    # THEN S3 refuses (412): the object is not the one it saw
    with pytest.raises(OutputExists):
        store.put_file("k.bin", str(new), sha256="new", fingerprint="v1-new", replaces=seen)
    assert s3.get_object(Bucket="out", Key="k.bin")["Body"].read() == b"theirs"
    # AND with the current ETag the replacement goes through, carrying the new fingerprint (no If-Match left
    # behind in the metadata)
    current = store.head("k.bin").version
    store.put_file("k.bin", str(new), sha256="new", fingerprint="v1-new", replaces=current)
    assert s3.get_object(Bucket="out", Key="k.bin")["Body"].read(1) == b"n"
    assert "fanfetch-if-match" not in s3.head_object(Bucket="out", Key="k.bin")["Metadata"]
    assert store.head("k.bin").fingerprint == "v1-new"
    if size > 5 * 2**20:  # the multipart upload's completion carried the precondition both times
        assert aws.seen[-2:] == [seen, current]
