"""The worker Lambda's CloudWatch metrics, as the EMF documents it prints: what the dashboard and alarms read."""

from __future__ import annotations

import json

import boto3
import pytest

from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import FakeLambdaContext, sqs_event


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"FANFETCH_DEADLINE_RESERVE_S": "15"}


def _message(origin, station, years) -> str:
    group = Group(group_id=str(station.station_id), key=f"stations/{station.station_id}.csv", merge=MergeMode.CSV,
                  sources=tuple(Source(origin.url_template.format(station_id=station.station_id, year=y))
                                for y in years))
    return encode_message("job1", group)


def _emf(stdout: str) -> list[dict]:
    """The EMF documents among the printed lines (Powertools prints one per flush)."""
    documents = []
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def _total(documents: list[dict], name: str) -> float:
    values = [d[name] for d in documents if name in d]
    return sum(sum(v) if isinstance(v, list) else v for v in values)


def test_a_batch_emits_files_bytes_and_group_counts_as_emf(worker, capsys):
    # GIVEN two stations that exist (3 + 1 files) and one that 404s
    module, _, _, _, origin = worker
    a, b, c = origin.stations[0], origin.stations[1], origin.stations[2]
    event = sqs_event([_message(origin, a, range(a.first_year, a.last_year + 1)),
                       _message(origin, b, [b.first_year]), _message(origin, c, [1800])])
    capsys.readouterr()
    # WHEN the worker handles the batch
    module.handler(event, FakeLambdaContext())
    documents = _emf(capsys.readouterr().out)
    # THEN the metrics say so, in the fanfetch namespace with their units
    assert documents, "no EMF document printed"
    directive = documents[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "fanfetch"
    units = {m["Name"]: m["Unit"] for d in documents for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["Bytes"] == "Bytes" and units["GroupDurationMs"] == "Milliseconds" and units["Files"] == "Count"
    files_a = a.last_year - a.first_year + 1
    assert _total(documents, "GroupsOk") == 2 and _total(documents, "GroupsFailed") == 1
    assert _total(documents, "GroupsSkipped") == 0
    assert _total(documents, "Files") == files_a + 1
    stored = boto3.client("s3")
    size = sum(stored.head_object(Bucket="out", Key=f"stations/{s.station_id}.csv")["ContentLength"] for s in (a, b))
    assert _total(documents, "Bytes") == size
