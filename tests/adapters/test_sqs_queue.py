"""The SQS queue adapter: batched sends, retries of failed entries, no retry of sender faults."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from fanfetch.adapters.sqs import SqsQueue
from fanfetch.errors import EnqueueError
from tests.fakes import FakeClock


@pytest.fixture
def sqs(aws_env):
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        yield client, client.create_queue(QueueName="work")["QueueUrl"]


def _drain(client, url):
    bodies = []
    while batch := client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in batch]
        client.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return bodies


def test_every_message_arrives_exactly_once(sqs):
    client, url = sqs
    bodies = [f"m{i}" for i in range(57)]
    sent = SqsQueue(client, url, calls_in_flight=4).send_messages(bodies)
    assert sent == 57
    assert sorted(_drain(client, url)) == sorted(bodies)


def test_entries_returned_in_failed_are_retried_until_sent(sqs):
    # GIVEN SQS reports entry 1 as a transient failure on the first call
    client, url = sqs
    clock = FakeClock()
    with Stubber(client) as stub:
        stub.add_response("send_message_batch", {
            "Successful": [{"Id": "0", "MessageId": "a", "MD5OfMessageBody": "x"}],
            "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}]},
            {"QueueUrl": url, "Entries": ANY})
        stub.add_response("send_message_batch", {
            "Successful": [{"Id": "1", "MessageId": "b", "MD5OfMessageBody": "x"}], "Failed": []},
            {"QueueUrl": url, "Entries": [{"Id": "1", "MessageBody": "second"}]})
        # WHEN two messages are sent
        sent = SqsQueue(client, url, clock=clock).send_messages(["first", "second"])
        stub.assert_no_pending_responses()
    # THEN both count as sent, after one backoff sleep
    assert sent == 2 and len(clock.sleeps) == 1


def test_sender_faults_are_not_retried_and_are_reported(sqs):
    client, url = sqs
    with Stubber(client) as stub:
        stub.add_response("send_message_batch", {
            "Successful": [{"Id": "0", "MessageId": "a", "MD5OfMessageBody": "x"}],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad"}]},
            {"QueueUrl": url, "Entries": ANY})
        with pytest.raises(EnqueueError) as caught:
            SqsQueue(client, url, clock=FakeClock()).send_messages(["ok", "bad"])
    assert caught.value.sent == 1 and caught.value.failed == 1
    assert "InvalidMessageContents" in str(caught.value)


def test_the_depth_counts_visible_in_flight_and_delayed_messages(sqs):
    # GIVEN a queue with two visible messages, one received (in flight) and one delayed
    client, url = sqs
    SqsQueue(client, url).send_messages(["a", "b", "c"])
    client.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
    client.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    # WHEN its depth is read / THEN all four count
    assert SqsQueue(client, url).depth() == 4


def test_the_depth_of_a_queue_sqs_cannot_describe_is_unknown(sqs):
    # GIVEN a queue URL that does not exist / WHEN its depth is read / THEN SQS cannot say: None, not an error
    client, url = sqs
    assert SqsQueue(client, url + "-gone").depth() is None
