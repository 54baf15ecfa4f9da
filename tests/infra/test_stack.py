"""Invariants of the synthesized FanfetchStack template (bundling skipped): each test guards one promise."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from stacks import FanfetchStack
from stacks.queues import DLQ_RETENTION_DAYS, MAX_MESSAGE_BYTES, SOURCE_RETENTION_DAYS
from tests.infra.conftest import logical_id

_DAY_S = 86_400


def _grants_of(template: Template, stack: FanfetchStack, role: Any) -> set[tuple[str, str]]:
    """Every (action, resource) granted by inline policies attached to ``role``; resources as JSON."""
    role_ref = {"Ref": logical_id(stack, role)}
    grants: set[tuple[str, str]] = set()
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if role_ref not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            grants.update((a, json.dumps(r, sort_keys=True)) for a in actions for r in resources)
    return grants


def _arn_of(stack: FanfetchStack, construct: Any) -> str:
    return json.dumps({"Fn::GetAtt": [logical_id(stack, construct), "Arn"]}, sort_keys=True)


# --- storage ---------------------------------------------------------------------------------------------


def test_output_bucket_is_private_encrypted_unversioned_and_cleans_up_multipart_uploads(
    template: Template, default_stack: FanfetchStack
) -> None:
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like(
                {
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    },
                    "LifecycleConfiguration": {
                        "Rules": Match.array_with(
                            [
                                Match.object_like(
                                    {
                                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                                        "Status": "Enabled",
                                    }
                                )
                            ]
                        )
                    },
                    "LoggingConfiguration": Match.object_like(
                        {
                            "DestinationBucketName": {
                                "Ref": logical_id(default_stack, default_stack.storage.access_log_bucket)
                            }
                        }
                    ),
                    "VersioningConfiguration": Match.absent(),
                }
            ),
            # The data is the product: the stack never deletes it.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_every_bucket_denies_plain_http(template: Template) -> None:
    template.resource_count_is("AWS::S3::Bucket", 2)  # output + access logs
    template.resource_count_is("AWS::S3::BucketPolicy", 2)
    for policy in template.find_resources("AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), statements


def test_every_bucket_is_encrypted_and_blocks_public_access(template: Template) -> None:
    for bucket in template.find_resources("AWS::S3::Bucket").values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]


# --- queues ----------------------------------------------------------------------------------------------


def test_work_queue_redrives_to_the_dlq_after_five_receives_by_default(
    template: Template, default_stack: FanfetchStack
) -> None:
    dlq_id = logical_id(default_stack, default_stack.queues.dead_letter_queue)
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}, "maxReceiveCount": 5},
            "MessageRetentionPeriod": SOURCE_RETENTION_DAYS * _DAY_S,
            "SqsManagedSseEnabled": True,
        },
    )


def test_dlq_keeps_messages_longer_than_the_work_queue(
    template: Template, default_stack: FanfetchStack
) -> None:
    queues = template.find_resources("AWS::SQS::Queue")
    work = queues[logical_id(default_stack, default_stack.queues.queue)]["Properties"]
    dlq = queues[logical_id(default_stack, default_stack.queues.dead_letter_queue)]["Properties"]
    assert dlq["MessageRetentionPeriod"] == DLQ_RETENTION_DAYS * _DAY_S == 14 * _DAY_S
    assert dlq["MessageRetentionPeriod"] > work["MessageRetentionPeriod"]
    assert "RedrivePolicy" not in dlq


def test_both_queues_take_a_full_group_message_plus_its_dead_letter_reason(template: Template) -> None:
    from fanfetch.core.messages import SQS_MAX_MESSAGE_BYTES

    # GIVEN the largest group message the producer sends, dead-lettered with the worker's reason attributes
    # (SQS counts each attribute's name, type and value); the error text is cut at 1,000 characters
    reason = {"fanfetch-error": "\U0001f4a5" * 1000, "fanfetch-error-type": "retries exhausted",
              "fanfetch-failure-record": "_jobs/" + "j" * 64 + "/failed/" + "g" * 1024 + ".json"}
    dead_letter_bytes = SQS_MAX_MESSAGE_BYTES + sum(
        len(name.encode()) + len(b"String") + len(value.encode()) for name, value in reason.items())
    # THEN both queues state SQS's maximum explicitly (1 MiB) and it holds that message
    queues = template.find_resources("AWS::SQS::Queue").values()
    assert [q["Properties"].get("MaximumMessageSize") for q in queues] == [MAX_MESSAGE_BYTES] * 2 == [1_048_576] * 2
    assert dead_letter_bytes < MAX_MESSAGE_BYTES


def test_both_queues_are_encrypted_and_tls_only(template: Template) -> None:
    template.resource_count_is("AWS::SQS::Queue", 2)
    for queue in template.find_resources("AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    template.resource_count_is("AWS::SQS::QueuePolicy", 2)
    for policy in template.find_resources("AWS::SQS::QueuePolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


@pytest.mark.parametrize("max_receive_count", [5, 12])
def test_max_receive_count_comes_from_context(synth: Callable[..., Template], max_receive_count: int) -> None:
    template = synth({"maxReceiveCount": str(max_receive_count)})
    template.has_resource_properties(
        "AWS::SQS::Queue", {"RedrivePolicy": Match.object_like({"maxReceiveCount": max_receive_count})}
    )
    # The worker is told the same number, so it knows which delivery is the last one.
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like({"FANFETCH_MAX_RECEIVE_COUNT": str(max_receive_count)})
            }
        },
    )


@pytest.mark.parametrize("worker_timeout_s", [30, 300, 900])
def test_visibility_timeout_is_at_least_six_times_the_worker_timeout(
    synth: Callable[..., Template], worker_timeout_s: int
) -> None:
    # GIVEN a worker timeout from context
    template = synth({"workerTimeoutS": worker_timeout_s})
    # THEN the worker really has that timeout
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "handler.handler",
            "Timeout": worker_timeout_s,
            "Environment": {"Variables": Match.object_like({"FANFETCH_CONCURRENCY": "16"})},
        },
    )
    # AND the queue the worker reads hides a received message for at least 6x that long (AWS guidance)
    (work_queue,) = [
        q["Properties"]
        for q in template.find_resources("AWS::SQS::Queue").values()
        if "RedrivePolicy" in q["Properties"]
    ]
    assert work_queue["VisibilityTimeout"] >= 6 * worker_timeout_s


# --- functions -------------------------------------------------------------------------------------------


def test_both_functions_run_the_current_python_runtime_on_x86_64(template: Template) -> None:
    template.resource_count_is("AWS::Lambda::Function", 2)
    for function in template.find_resources("AWS::Lambda::Function").values():
        props = function["Properties"]
        assert props["Runtime"] == "python3.14"
        assert props["Architectures"] == ["x86_64"]
        assert props["Handler"] == "handler.handler"


def test_worker_environment(template: Template, default_stack: FanfetchStack) -> None:
    bucket_id = logical_id(default_stack, default_stack.storage.bucket)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "MemorySize": 1024,
            "Timeout": 300,
            "Environment": {
                "Variables": {
                    "BUCKET_NAME": {"Ref": bucket_id},
                    "DLQ_URL": {"Ref": logical_id(default_stack, default_stack.queues.dead_letter_queue)},
                    "FANFETCH_MAX_RECEIVE_COUNT": "5",
                    "OUTPUT_PREFIX": "",
                    "FANFETCH_CONCURRENCY": "16",
                    "FANFETCH_ALLOW_HOSTS": "",
                    "FANFETCH_ON_MISSING": "fail",
                    "FANFETCH_REDACT_PARAMS": "",
                    "POWERTOOLS_SERVICE_NAME": "fanfetch",
                    "POWERTOOLS_METRICS_NAMESPACE": "fanfetch",
                }
            },
        },
    )


def test_producer_environment(template: Template, default_stack: FanfetchStack) -> None:
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "MemorySize": 512,
            "Timeout": 900,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "QUEUE_URL": {"Ref": logical_id(default_stack, default_stack.queues.queue)},
                        "BUCKET_NAME": {"Ref": logical_id(default_stack, default_stack.storage.bucket)},
                    }
                )
            },
        },
    )


def test_sizing_and_worker_settings_come_from_context(synth: Callable[..., Template]) -> None:
    template = synth(
        {
            "workerMemoryMb": "2048",
            "producerMemoryMb": 256,
            "producerTimeoutS": 600,
            "downloadConcurrency": "32",
            "outputPrefix": "weather/",
            "allowHosts": "origin.internal:8080",
            "workerReservedConcurrency": 100,
        }
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "MemorySize": 2048,
            "ReservedConcurrentExecutions": 100,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "OUTPUT_PREFIX": "weather/",
                        "FANFETCH_CONCURRENCY": "32",
                        "FANFETCH_ALLOW_HOSTS": "origin.internal:8080",
                    }
                )
            },
        },
    )
    template.has_resource_properties("AWS::Lambda::Function", {"MemorySize": 256, "Timeout": 600})


def test_the_worker_gets_ephemeral_storage_for_its_spool_the_producer_the_default(
    template: Template, default_stack: FanfetchStack, synth: Callable[..., Template]
) -> None:
    # GIVEN the defaults: the worker's /tmp is 2048 MiB (a merged group needs ~2x its size there)
    functions = template.find_resources("AWS::Lambda::Function")
    worker = functions[logical_id(default_stack, default_stack.worker.function)]["Properties"]
    producer = functions[logical_id(default_stack, default_stack.producer.function)]["Properties"]
    assert worker["EphemeralStorage"] == {"Size": 2048}
    assert "EphemeralStorage" not in producer  # Lambda's 512 MiB: the producer spools nothing
    # AND the context parameter sets it
    bigger = synth({"workerEphemeralStorageMb": "10240"})
    bigger.has_resource_properties("AWS::Lambda::Function", {"EphemeralStorage": {"Size": 10240},
                                                              "MemorySize": 1024})


def test_each_function_logs_to_its_own_log_group_with_retention(template: Template) -> None:
    template.resource_count_is("AWS::Logs::LogGroup", 2)
    template.all_resources_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    log_group_ids = set(template.find_resources("AWS::Logs::LogGroup"))
    for function in template.find_resources("AWS::Lambda::Function").values():
        assert function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] in log_group_ids
    # The deprecated logRetention custom resource is not used.
    assert not template.find_resources("Custom::LogRetention")


def test_log_retention_comes_from_context(synth: Callable[..., Template]) -> None:
    synth({"logRetentionDays": "365"}).all_resources_properties(
        "AWS::Logs::LogGroup", {"RetentionInDays": 365}
    )


def test_worker_reads_the_queue_in_small_batches_with_partial_failures(
    template: Template, default_stack: FanfetchStack
) -> None:
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [logical_id(default_stack, default_stack.queues.queue), "Arn"]},
            "FunctionName": {"Ref": logical_id(default_stack, default_stack.worker.function)},
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 50},
        },
    )


def test_event_source_batch_and_concurrency_come_from_context(synth: Callable[..., Template]) -> None:
    template = synth({"batchSize": "3", "workerMaxConcurrency": "200"})
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"BatchSize": 3, "ScalingConfig": {"MaximumConcurrency": 200}}
    )


def test_the_event_source_can_be_turned_off_for_fixed_ip_workers(synth: Callable[..., Template]) -> None:
    # GIVEN -c workerEventSource=false: `fanfetch worker`s on fixed-IP machines drain the queue
    template = synth({"workerEventSource": "false"})
    # THEN the mapping exists (the function stays wired, and can be switched back on) but is disabled
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {"Enabled": False, "BatchSize": 10})


# --- schedule --------------------------------------------------------------------------------------------


def test_no_schedule_unless_configured(template: Template) -> None:
    template.resource_count_is("AWS::Events::Rule", 0)


def test_schedule_invokes_the_producer_with_the_manifest_url(synth: Callable[..., Template]) -> None:
    # GIVEN a schedule in context
    stack_context = {"scheduleExpression": "rate(1 day)", "scheduleManifest": "manifests/daily.csv"}
    template = synth(stack_context)
    # THEN one rule runs the producer daily with {"manifest": "s3://<our bucket>/manifests/daily.csv", "refresh": true,
    # "scheduled_at": <the event's time>}: a retried or duplicated delivery carries the same time, so the same job id
    template.resource_count_is("AWS::Events::Rule", 1)
    rule = next(iter(template.find_resources("AWS::Events::Rule").values()))["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 day)"
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::GetAtt"][1] == "Arn"
    producer_id = target["Arn"]["Fn::GetAtt"][0]
    functions = template.find_resources("AWS::Lambda::Function")
    assert "QUEUE_URL" in functions[producer_id]["Properties"]["Environment"]["Variables"]
    bucket_id = next(
        k
        for k, v in template.find_resources("AWS::S3::Bucket").items()
        if "LoggingConfiguration" in v["Properties"]
    )
    assert target["InputTransformer"] == {
        "InputPathsMap": {"time": "$.time"},
        "InputTemplate": {"Fn::Join": ["", ['{"manifest":"s3://', {"Ref": bucket_id},
                                            '/manifests/daily.csv","refresh":true,"scheduled_at":<time>}']]},
    }
    # AND EventBridge may invoke the producer
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com",
            "FunctionName": {"Fn::GetAtt": [producer_id, "Arn"]},
        },
    )


# --- monitoring ------------------------------------------------------------------------------------------


def test_alarms_cover_dlq_errors_throttles_and_queue_age(
    template: Template, default_stack: FanfetchStack
) -> None:
    topic_ref = {"Ref": logical_id(default_stack, default_stack.monitoring.topic)}
    dlq_name = {
        "Fn::GetAtt": [logical_id(default_stack, default_stack.queues.dead_letter_queue), "QueueName"]
    }
    queue_name = {"Fn::GetAtt": [logical_id(default_stack, default_stack.queues.queue), "QueueName"]}
    worker = {"Ref": logical_id(default_stack, default_stack.worker.function)}
    expected = [
        ("ApproximateNumberOfMessagesVisible", "QueueName", dlq_name, 0),
        ("Errors", "FunctionName", worker, 0),
        ("Throttles", "FunctionName", worker, 0),
        ("ApproximateAgeOfOldestMessage", "QueueName", queue_name, 5 * 6 * 300),
    ]
    for metric, dimension, value, threshold in expected:
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "MetricName": metric,
                "Dimensions": [{"Name": dimension, "Value": value}],
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": threshold,
                "AlarmActions": [topic_ref],
            },
        )


def test_queue_age_threshold_comes_from_context(synth: Callable[..., Template]) -> None:
    synth({"queueAgeAlarmS": "1200"}).has_resource_properties(
        "AWS::CloudWatch::Alarm", {"MetricName": "ApproximateAgeOfOldestMessage", "Threshold": 1200}
    )


def test_alarm_topic_is_encrypted_with_a_rotated_key_cloudwatch_can_use(
    template: Template, default_stack: FanfetchStack
) -> None:
    key_id = logical_id(default_stack, default_stack.monitoring.key)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            }
                        )
                    ]
                )
            },
        },
    )
    template.resource_count_is("AWS::SNS::Subscription", 0)


def test_alarm_email_subscribes_to_the_topic(synth: Callable[..., Template]) -> None:
    synth({"alarmEmail": "ops@example.com"}).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )


# --- outputs ---------------------------------------------------------------------------------------------


def test_outputs_name_what_the_cli_needs(template: Template, default_stack: FanfetchStack) -> None:
    expected = {
        "QueueUrl": default_stack.queues.queue,
        "DeadLetterQueueUrl": default_stack.queues.dead_letter_queue,
        "BucketName": default_stack.storage.bucket,
        "ProducerFunctionName": default_stack.producer.function,
        "WorkerFunctionName": default_stack.worker.function,
    }
    for name, construct in expected.items():
        template.has_output(name, {"Value": {"Ref": logical_id(default_stack, construct)}})


# --- IAM -------------------------------------------------------------------------------------------------


def test_producer_may_read_and_enqueue_but_not_write_or_consume(
    template: Template, default_stack: FanfetchStack
) -> None:
    grants = _grants_of(template, default_stack, default_stack.producer.role)
    actions = {action for action, _ in grants}
    assert {"s3:GetObject", "s3:ListBucket"} <= actions
    assert not actions & {"s3:DeleteObject", "sqs:ReceiveMessage", "sqs:DeleteMessage"}
    # Its only write: the pre-flight's marker under the bookkeeping prefix, never over outputs.
    [put] = [json.loads(r) for a, r in grants if a == "s3:PutObject"]
    assert put["Fn::Join"][1][-1] == "/_jobs/*"
    # It sends to the work queue and nowhere else.
    assert {r for a, r in grants if a == "sqs:SendMessage"} == {
        _arn_of(default_stack, default_stack.queues.queue)
    }


def test_worker_may_read_write_consume_and_dead_letter_but_not_enqueue_or_delete(
    template: Template, default_stack: FanfetchStack
) -> None:
    grants = _grants_of(template, default_stack, default_stack.worker.role)
    actions = {action for action, _ in grants}
    assert {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket"} <= actions
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= actions
    assert not actions & {"s3:DeleteObject", "s3:PutBucketPolicy"}
    # It consumes the work queue but sends only to the DLQ (failures that cannot heal, with their reason).
    work_queue = _arn_of(default_stack, default_stack.queues.queue)
    assert ("sqs:ReceiveMessage", work_queue) in grants
    assert {r for a, r in grants if a == "sqs:SendMessage"} == {
        _arn_of(default_stack, default_stack.queues.dead_letter_queue)
    }


def _as_list(value: object) -> list[object]:
    """A policy element (``Action``, ``Resource``) as a list: IAM takes a string or a list of them."""
    return value if isinstance(value, list) else [value]


def _wildcard_resources(statement: dict) -> list[object]:
    """The statement's resources that are the bare wildcard, whether given as ``"*"`` or inside a list."""
    return [r for r in _as_list(statement.get("Resource", [])) if r == "*"]


def test_the_wildcard_check_sees_a_star_in_a_list_too() -> None:
    for resource in ("*", ["*"], ["arn:aws:s3:::b", "*"]):
        assert _wildcard_resources({"Resource": resource}) == ["*"], resource
    assert _wildcard_resources({"Resource": ["arn:aws:s3:::b/*", {"Fn::GetAtt": ["Q", "Arn"]}]}) == []


def test_no_identity_policy_uses_wildcard_actions_or_resources(template: Template) -> None:
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not [a for a in _as_list(statement["Action"]) if "*" in a], statement
            assert not _wildcard_resources(statement), statement
    for role in template.find_resources("AWS::IAM::Role").values():
        # No AWS managed policies (AWSLambdaBasicExecutionRole writes to every log group).
        assert "ManagedPolicyArns" not in role["Properties"]


def test_per_host_politeness_reaches_the_worker_only_when_configured(synth: Callable[..., Template]) -> None:
    # GIVEN per-host limits in context
    template = synth({"perHostConcurrency": 4, "perHostRps": "2.5"})
    # THEN the worker gets them as environment variables
    template.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like(
        {"FANFETCH_PER_HOST_CONCURRENCY": "4", "FANFETCH_PER_HOST_RPS": "2.5"})}})
    # AND without them no function carries them (no limit by default)
    for function in synth().find_resources("AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert "FANFETCH_PER_HOST_RPS" not in variables and "FANFETCH_PER_HOST_CONCURRENCY" not in variables


def test_on_missing_reaches_the_worker_from_context_and_a_bad_value_is_named(synth: Callable[..., Template]) -> None:
    # GIVEN onMissing=skip in context / THEN the worker's environment carries it
    template = synth({"onMissing": "skip"})
    template.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": Match.object_like(
        {"FANFETCH_ON_MISSING": "skip"})}})
    # AND a value that is neither fail nor skip stops synth, naming the key
    with pytest.raises(Exception, match="onMissing"):
        synth({"onMissing": "ignore"})


def test_redact_params_reach_both_lambdas_from_context(synth: Callable[..., Template]) -> None:
    template = synth({"redactParams": "api_key, X-Goog-Signature"})
    variables = Match.object_like({"FANFETCH_REDACT_PARAMS": "api_key,X-Goog-Signature"})
    both = template.find_resources("AWS::Lambda::Function", {"Properties": {"Environment": {"Variables": variables}}})
    assert len(both) == 2  # the producer and the worker
    with pytest.raises(Exception, match="redactParams"):
        synth({"redactParams": "bad name"})


def test_a_bad_politeness_value_is_named(synth: Callable[..., Template]) -> None:
    with pytest.raises(Exception, match="perHostRps"):
        synth({"perHostRps": "-1"})
