"""The DLQ redrive against botocore's Stubber: a move task where the endpoint has one, else the by-hand
fallback that never deletes an unsent message."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from fanfetch.adapters.sqs_redrive import SqsRedrive
from fanfetch.errors import InputError

DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq"
WORK = "https://sqs.us-east-1.amazonaws.com/123456789012/work"


def _client(service: str):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _expect_queue_attributes(stub: Stubber) -> None:
    stub.add_response("get_queue_attributes", {"Attributes": {
        "QueueArn": "arn:aws:sqs:us-east-1:123456789012:dlq", "ApproximateNumberOfMessages": "7"}},
        {"QueueUrl": DLQ, "AttributeNames": ["QueueArn", "ApproximateNumberOfMessages"]})
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:work"}},
                      {"QueueUrl": WORK, "AttributeNames": ["QueueArn"]})


def test_redrive_uses_a_message_move_task_where_the_endpoint_has_one():
    client = _client("sqs")
    with Stubber(client) as stub:
        _expect_queue_attributes(stub)
        stub.add_response("start_message_move_task", {"TaskHandle": "task-1"},
                          {"SourceArn": "arn:aws:sqs:us-east-1:123456789012:dlq",
                           "DestinationArn": "arn:aws:sqs:us-east-1:123456789012:work"})
        report = SqsRedrive(client).redrive(dlq_url=DLQ, queue_url=WORK)
        stub.assert_no_pending_responses()
    assert (report.method, report.moved, report.task_handle) == ("move-task", 7, "task-1")


def test_without_move_tasks_it_moves_by_hand_and_deletes_only_what_was_sent():
    # GIVEN an endpoint without move tasks and a DLQ holding 3 messages, one of which the work queue refuses
    client = _client("sqs")
    messages = [{"MessageId": f"m{i}", "ReceiptHandle": f"rh{i}", "Body": f'{{"n": {i}}}', "MD5OfBody": "x",
                 "MessageAttributes": {"fanfetch-error": {"DataType": "String", "StringValue": f"why {i}"}}}
                for i in range(3)]
    with Stubber(client) as stub:
        _expect_queue_attributes(stub)
        stub.add_client_error("start_message_move_task", service_error_code="UnsupportedOperation")
        stub.add_response("receive_message", {"Messages": messages}, {
            "QueueUrl": DLQ, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1, "VisibilityTimeout": 60,
            "MessageAttributeNames": ["All"]})
        sent_entries = [{"Id": str(i), "MessageBody": f'{{"n": {i}}}', "MessageAttributes": {
            "fanfetch-error": {"DataType": "String", "StringValue": f"why {i}"}}} for i in range(3)]
        stub.add_response("send_message_batch", {
            "Successful": [{"Id": "0", "MessageId": "n0", "MD5OfMessageBody": "x"},
                           {"Id": "2", "MessageId": "n2", "MD5OfMessageBody": "x"}],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents"}]},
            {"QueueUrl": WORK, "Entries": sent_entries})
        stub.add_response("delete_message_batch", {"Successful": [{"Id": "0"}, {"Id": "2"}], "Failed": []},
                          {"QueueUrl": DLQ, "Entries": [{"Id": "0", "ReceiptHandle": "rh0"},
                                                        {"Id": "2", "ReceiptHandle": "rh2"}]})
        stub.add_response("receive_message", {"Messages": []}, None)

        # WHEN redriven
        report = SqsRedrive(client).redrive(dlq_url=DLQ, queue_url=WORK)
        stub.assert_no_pending_responses()

    # THEN bodies and attributes went unchanged, the refused one stays in the DLQ (not deleted)
    assert (report.method, report.moved, report.failed, report.not_deleted) == ("receive-send-delete", 2, 1, 0)


def test_a_move_task_error_that_is_not_about_support_is_not_papered_over():
    client = _client("sqs")
    with Stubber(client) as stub:
        _expect_queue_attributes(stub)
        stub.add_client_error("start_message_move_task", service_error_code="RequestThrottled")
        with pytest.raises(Exception, match="RequestThrottled"):
            SqsRedrive(client).redrive(dlq_url=DLQ, queue_url=WORK)


def test_a_missing_dead_letter_queue_is_an_input_error():
    client = _client("sqs")
    with Stubber(client) as stub:
        stub.add_client_error("get_queue_attributes", service_error_code="AWS.SimpleQueueService.NonExistentQueue")
        with pytest.raises(InputError, match="does not exist"):
            SqsRedrive(client).redrive(dlq_url=DLQ, queue_url=WORK)
