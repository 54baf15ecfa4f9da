"""The S3 store under moto: uploads with their sha256, head, and error classification."""

from __future__ import annotations

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
