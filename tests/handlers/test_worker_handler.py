"""The worker Lambda handler under moto: partial batch responses, deadlines, warm starts."""

from __future__ import annotations

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from moto import mock_aws

from fanfetch.cli.demo import expected_station_csv
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import FakeLambdaContext, load_handler, sqs_event


@pytest.fixture
def worker(demo_origin, monkeypatch, aws_env):
    monkeypatch.setenv("BUCKET_NAME", "out")
    monkeypatch.setenv("OUTPUT_PREFIX", "runs")
    monkeypatch.setenv("FANFETCH_ALLOW_HOSTS", demo_origin.host_port)
    monkeypatch.setenv("FANFETCH_DEADLINE_RESERVE_S", "15")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="out")
        module = load_handler("worker")
        yield module, s3, demo_origin


def _station_message(origin, station, *, years=None) -> str:
    years = years or range(station.first_year, station.last_year + 1)
    url = origin.url_template
    group = Group(group_id=str(station.station_id), key=f"stations/{station.station_id}.csv", merge=MergeMode.CSV,
                  sources=tuple(Source(url.format(station_id=station.station_id, year=y)) for y in years))
    return encode_message("job1", group)


def _object(s3, key):
    return s3.get_object(Bucket="out", Key=key)["Body"].read()


def test_a_batch_of_groups_lands_merged_and_reports_no_failures(worker):
    # GIVEN three station messages
    module, s3, origin = worker
    stations = origin.stations[:3]
    event = sqs_event([_station_message(origin, s) for s in stations])
    # WHEN the worker handles the batch
    response = module.handler(event, FakeLambdaContext())
    # THEN nothing is reported failed and each station's merged CSV is byte-exact under the prefix
    assert response == {"batchItemFailures": []}
    for station in stations:
        assert _object(s3, f"runs/stations/{station.station_id}.csv") == expected_station_csv(station)


def test_only_the_failed_group_is_reported_so_only_it_comes_back(worker):
    # GIVEN a batch whose second group asks for a year the origin does not have (404)
    module, s3, origin = worker
    good, bad = origin.stations[0], origin.stations[1]
    event = sqs_event([_station_message(origin, good), _station_message(origin, bad, years=[1800])])
    # WHEN the worker handles it
    response = module.handler(event, FakeLambdaContext())
    # THEN exactly the bad record is reported, and the good group is stored
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert _object(s3, f"runs/stations/{good.station_id}.csv") == expected_station_csv(good)
    assert "Contents" not in s3.list_objects_v2(Bucket="out", Prefix=f"runs/stations/{bad.station_id}")


def test_a_poison_message_is_reported_while_the_rest_of_the_batch_goes_on(worker):
    module, s3, origin = worker
    event = sqs_event(["{not json", _station_message(origin, origin.stations[0])])
    response = module.handler(event, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert _object(s3, f"runs/stations/{origin.stations[0].station_id}.csv")


def test_when_time_runs_short_no_group_starts_and_all_are_reported(worker):
    # GIVEN less remaining time than the reserve the worker keeps (15 s)
    module, s3, origin = worker
    event = sqs_event([_station_message(origin, s) for s in origin.stations[:2]])
    event["Records"].append(sqs_event(["{}"])["Records"][0] | {"messageId": "msg-poison"})
    # WHEN the worker is invoked with 5 s left
    with pytest.raises(BatchProcessingError):
        module.handler(event, FakeLambdaContext(remaining_ms=5_000))
    # THEN it raised (Powertools: every record failed → whole batch back) without a single download
    assert origin.total_requests == 0


def test_a_warm_container_reuses_its_clients_and_forgets_the_previous_batch(worker):
    # GIVEN a first invocation with a failure
    module, s3, origin = worker
    first = module.handler(sqs_event(["{}", _station_message(origin, origin.stations[0])]), FakeLambdaContext())
    app = module._app
    # WHEN the same container handles a clean batch
    second = module.handler(sqs_event([_station_message(origin, origin.stations[1])]), FakeLambdaContext())
    # THEN the app (HTTP pool, S3 client) is the same object and no stale failure leaks into the answer
    assert first == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert second == {"batchItemFailures": []}
    assert module._app is app


def test_a_redelivered_group_already_stored_is_acknowledged_without_downloading(worker):
    module, s3, origin = worker
    message = _station_message(origin, origin.stations[2])
    module.handler(sqs_event([message]), FakeLambdaContext())
    before = origin.total_requests
    response = module.handler(sqs_event([message]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert origin.total_requests == before
