"""The deployed stack's adapters (work queue and DLQ, DynamoDB ledger, event bus, buckets, functions, its
outputs), for the producer Lambda, ``fanfetch worker``, ``fanfetch report`` and the ops commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fanfetch.bootstrap.aws import aws_client, lambda_invoke_client
from fanfetch.ports import ManifestReader, ObjectStore
from fanfetch.settings import Settings

if TYPE_CHECKING:  # boto3-backed adapters are imported where they are built, so `fanfetch run` into a
    # local folder never pays boto3's import time
    from fanfetch.adapters.events import EventBridgeEvents
    from fanfetch.adapters.lambda_invoke import LambdaFunctions
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
    from fanfetch.adapters.s3_read import S3Reader
    from fanfetch.adapters.sqs import SqsQueue
    from fanfetch.adapters.sqs_receive import SqsReceiver
    from fanfetch.adapters.stack_outputs import StackOutputs
    from fanfetch.ports import DeadLetterMover, Invoker, Ledger

__all__ = ["build_queue", "build_ledger", "build_output_store", "build_manifest_reader", "build_table_ledger",
           "build_job_events", "build_dead_letters", "find_stack", "build_stack_ledger", "build_s3_store",
           "build_invoker", "build_redrive", "build_queue_at", "build_functions", "build_s3_reader",
           "build_receiver"]


def build_queue(settings: Settings, *, endpoint_url: str | None = None) -> SqsQueue:
    from fanfetch.adapters.sqs import SqsQueue

    return SqsQueue(aws_client("sqs", endpoint_url=endpoint_url), settings.queue_url,
                    calls_in_flight=settings.send_calls_in_flight)


def build_ledger(settings: Settings, *, client: Any = None) -> DynamoDBLedger | None:
    """The DynamoDB job ledger named by ``LEDGER_TABLE`` (through ``client``, else a default one), or None when
    bookkeeping is off."""
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger

    if not settings.ledger_table:
        return None
    return DynamoDBLedger(client if client is not None else aws_client("dynamodb"), settings.ledger_table)


def build_output_store(settings: Settings) -> ObjectStore | None:
    """The producer's view of the workers' output (BUCKET_NAME + OUTPUT_PREFIX); None without a bucket."""
    if not settings.bucket_name:
        return None
    from fanfetch.adapters.s3 import S3Store

    return S3Store(aws_client("s3"), settings.bucket_name, settings.output_prefix)


def build_manifest_reader() -> ManifestReader:
    """Manifests the producer is handed, read from S3 (a client built only when one is read)."""
    from fanfetch.adapters.manifests import S3Manifests

    return S3Manifests(lambda: aws_client("s3"))


def build_table_ledger(table: str | None, *, endpoint_url: str | None = None) -> DynamoDBLedger | None:
    """The stack's DynamoDB job ledger ``table`` (None without one), for commands given it by flag."""
    from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger

    return DynamoDBLedger(aws_client("dynamodb", endpoint_url=endpoint_url), table) if table else None


def build_job_events(bus_name: str = "default", *, endpoint_url: str | None = None) -> EventBridgeEvents:
    """Where "job finished" is announced: the EventBridge bus ``bus_name``."""
    from fanfetch.adapters.events import EventBridgeEvents

    return EventBridgeEvents(aws_client("events", endpoint_url=endpoint_url), bus_name=bus_name)


def build_dead_letters(dlq_url: str | None, *, sqs_client: Any) -> SqsQueue | None:
    """Where permanent failures go at once with their reason: the DLQ at ``dlq_url`` (None without one)."""
    from fanfetch.adapters.sqs import SqsQueue

    return SqsQueue(sqs_client, dlq_url) if dlq_url else None


def find_stack(name: str, *, endpoint_url: str | None = None, cfn_client: Any = None) -> StackOutputs:
    """The deployed stack ``name``'s outputs, by role (InputError naming a missing stack or output)."""
    from fanfetch.adapters.stack_outputs import resolve_stack

    return resolve_stack(name, cfn_client=cfn_client or aws_client("cloudformation", endpoint_url=endpoint_url))


def build_stack_ledger(stack: StackOutputs, endpoint_url: str | None = None) -> Ledger:
    """The stack's DynamoDB job ledger (its LedgerTableName output); InputError for a stack without one."""
    from fanfetch.errors import InputError

    ledger = build_table_ledger(stack.ledger_table, endpoint_url=endpoint_url)
    if ledger is None:
        raise InputError(f"stack {stack.name!r} has no LedgerTableName output: redeploy it with this version")
    return ledger


def build_s3_store(bucket: str, prefix: str = "", *, s3_client: Any) -> ObjectStore:
    """The S3 objects under ``s3://bucket/prefix``, through ``s3_client``."""
    from fanfetch.adapters.s3 import S3Store

    return S3Store(s3_client, bucket, prefix)


def build_invoker(endpoint_url: str | None = None) -> Invoker:
    """Invokes a function synchronously at most once (``lambda_invoke_client``), e.g. the producer on submit."""
    from fanfetch.adapters.lambda_invoke import LambdaInvoker

    return LambdaInvoker(aws_client("lambda", endpoint_url=endpoint_url),
                         invoke_client_for=lambda read_timeout_s: lambda_invoke_client(read_timeout_s,
                                                                                        endpoint_url=endpoint_url))


def build_redrive(sqs_client: Any, *, move_client: Any) -> DeadLetterMover:
    """Moves a DLQ's messages back to the work queue (``move_client`` starts the move task)."""
    from fanfetch.adapters.sqs_redrive import SqsRedrive

    return SqsRedrive(sqs_client, move_client=move_client)


def build_queue_at(queue_url: str, *, sqs_client: Any) -> SqsQueue:
    """The SQS queue at ``queue_url`` through ``sqs_client`` (e.g. to read its depth)."""
    from fanfetch.adapters.sqs import SqsQueue

    return SqsQueue(sqs_client, queue_url)


def build_functions(*, lambda_client: Any) -> LambdaFunctions:
    """Reads the deployed functions' configuration through ``lambda_client``."""
    from fanfetch.adapters.lambda_invoke import LambdaFunctions

    return LambdaFunctions(lambda_client)


def build_s3_reader(bucket: str, *, endpoint_url: str | None = None) -> S3Reader:
    """Reads folders and objects of ``bucket`` (what a run left there)."""
    from fanfetch.adapters.s3_read import S3Reader

    return S3Reader(aws_client("s3", endpoint_url=endpoint_url), bucket)


def build_receiver(queue_url: str, *, sqs_client: Any) -> SqsReceiver:
    """Where a long-running worker receives its batches: the SQS queue at ``queue_url``."""
    from fanfetch.adapters.sqs_receive import SqsReceiver

    return SqsReceiver(sqs_client, queue_url)
