"""The SQS receiver a long-running worker polls through (moto): receive with the attributes the worker reads,
batch delete and visibility changes with their failed entries, the queue's visibility timeout; a missing queue is an
InputError, another failure a QueueError naming SQS's code."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from fanfetch.adapters.sqs_receive import SqsReceiver
from fanfetch.errors import InputError, QueueError


@pytest.fixture
def sqs(aws_env):
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
        yield client, url


def test_received_messages_carry_the_receive_count_and_are_deleted_by_handle(sqs):
    # GIVEN two messages in the queue
    client, url = sqs
    for body in ("a", "b"):
        client.send_message(QueueUrl=url, MessageBody=body)
    receiver = SqsReceiver(client, url)
    # WHEN they are received / THEN with their bodies and ApproximateReceiveCount (the last-delivery rule)
    messages = receiver.receive(10, wait_s=0)
    assert sorted(m["Body"] for m in messages) == ["a", "b"]
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in messages)
    # WHEN deleted, one by a handle SQS does not know / THEN one is deleted and the other's entry id comes back
    deleted, failed = receiver.delete({"0": messages[0]["ReceiptHandle"], "1": "not-a-handle"})
    assert (deleted, failed) == (1, ["1"])


def test_a_message_made_visible_again_is_received_again(sqs):
    client, url = sqs
    client.send_message(QueueUrl=url, MessageBody="a")
    receiver = SqsReceiver(client, url)
    [message] = receiver.receive(1, wait_s=0)
    assert receiver.receive(1, wait_s=0) == []  # in flight for 45 s
    # WHEN its visibility is set to 0 / THEN it is back at once, received a second time
    assert receiver.change_visibility({"0": message["ReceiptHandle"]}, 0) == (1, [])
    [again] = receiver.receive(1, wait_s=0)
    assert again["MessageId"] == message["MessageId"] and again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_the_queues_visibility_timeout_is_read(sqs):
    client, url = sqs
    assert SqsReceiver(client, url).visibility_timeout_s() == 45


def test_a_missing_queue_is_an_input_error_for_every_call(sqs):
    client, url = sqs
    gone = SqsReceiver(client, url + "-gone")
    for call in (gone.visibility_timeout_s, lambda: gone.receive(1, wait_s=0)):
        with pytest.raises(InputError, match=r"^queue .*work-gone does not exist$"):
            call()


def test_a_throttled_receive_is_a_queue_error_naming_the_code():
    # GIVEN SQS throttling the receive (botocore's Stubber: moto never throttles)
    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("receive_message", service_error_code="ThrottlingException", http_status_code=400)
        # WHEN received / THEN a retryable QueueError whose message is the code
        with pytest.raises(QueueError, match="^ThrottlingException$"):
            SqsReceiver(client, "https://sqs.us-east-1.amazonaws.com/1/work").receive(10, wait_s=20)
