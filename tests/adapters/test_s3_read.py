"""Reading what a run left in S3 (moto): the folders under a prefix, one object downloaded, errors classified by
their code and worded as botocore words them."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from fanfetch.adapters.s3_read import S3Reader
from fanfetch.errors import PermanentStoreError, RetryableStoreError


@pytest.fixture
def s3(aws_env):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="ff-bucket")
        for key in ("out/_jobs/job-1/results.jsonl", "out/_jobs/job-2/results.jsonl", "out/_jobs/other/x",
                    "out/_jobs/file-not-folder", "elsewhere/_jobs/job-9/results.jsonl"):
            client.put_object(Bucket="ff-bucket", Key=key, Body=key.encode())
        yield client


def test_the_folders_under_a_root_are_named_and_filtered_by_their_start(s3):
    # GIVEN job folders (and a plain object) under out/_jobs/ / WHEN they are listed, all and by a start
    reader = S3Reader(s3, "ff-bucket")
    # THEN the folder names come back sorted, without the root; objects directly under it are not folders
    assert reader.folders("out/_jobs/") == ["job-1", "job-2", "other"]
    assert reader.folders("out/_jobs/", "job") == ["job-1", "job-2"]
    assert reader.folders("out/_jobs/", "nope") == []


def test_a_folder_list_spanning_pages_is_whole(s3):
    # GIVEN more folders than one ListObjectsV2 page holds (1,000)
    for i in range(1005):
        s3.put_object(Bucket="ff-bucket", Key=f"many/f{i:04d}/x", Body=b"")
    # WHEN listed / THEN every one is there
    assert len(S3Reader(s3, "ff-bucket").folders("many/")) == 1005


def test_an_object_is_downloaded_to_a_file(s3, tmp_path):
    S3Reader(s3, "ff-bucket").download("out/_jobs/job-1/results.jsonl", str(tmp_path / "r.jsonl"))
    assert (tmp_path / "r.jsonl").read_bytes() == b"out/_jobs/job-1/results.jsonl"


def test_a_missing_bucket_is_permanent_and_a_missing_object_is_not_in_botocores_words(s3, tmp_path):
    # GIVEN a bucket that does not exist / WHEN its folders are listed / THEN a permanent error, botocore's text
    with pytest.raises(PermanentStoreError) as caught:
        S3Reader(s3, "no-such-bucket").folders("_jobs/")
    assert str(caught.value).startswith("An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation")
    # AND an object that is not there (S3 answers a bare 404 to the HEAD a download starts with) is retryable
    with pytest.raises(RetryableStoreError, match=r"\(404\)"):
        S3Reader(s3, "ff-bucket").download("out/_jobs/job-1/missing", str(tmp_path / "m"))
