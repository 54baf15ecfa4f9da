"""The output bucket (the product: retained, private, TLS-only) and the bucket receiving its access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

__all__ = ["Storage"]

_ACCESS_LOG_EXPIRY_DAYS = 90
_ABORT_INCOMPLETE_UPLOADS_DAYS = (
    1  # a worker that dies mid-multipart leaves parts that are billed until aborted
)


class Storage(Construct):
    """Attributes: ``bucket`` (downloads, manifests) and ``access_log_bucket`` (S3 server access logs)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # The S3 log delivery service can only write to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=False,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(_ACCESS_LOG_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(_ABORT_INCOMPLETE_UPLOADS_DAYS),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        NagSuppressions.add_resource_suppressions(
            self.access_log_bucket,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="This is the access-log target bucket; logging it into itself would loop.",
                )
            ],
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            # Off: every object is a re-downloadable merge result; versions would double the bill on re-runs.
            versioned=False,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="output-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(_ABORT_INCOMPLETE_UPLOADS_DAYS),
                )
            ],
            # The data is the product: deleting the stack must never delete the downloads.
            removal_policy=RemovalPolicy.RETAIN,
        )
