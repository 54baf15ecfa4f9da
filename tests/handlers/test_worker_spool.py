"""The worker fits its /tmp: with TMPDIR on a small tmpfs, groups are scheduled within the spool budget,
a group larger than the whole budget is dead-lettered with a reason naming the sizes, never a crashed batch.

These tests mount a tmpfs (root only) and skip cleanly otherwise.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanfetch.bootstrap.worker import build_worker_app
from fanfetch.core.messages import encode_message
from fanfetch.core.models import Group, MergeMode, Source
from tests.conftest import FakeLambdaContext, sqs_event
from tests.origin_faults import FaultOrigin
from tests.tmpfs import MIB, BigBody, big_sha256, mounted_tmpfs


@pytest.fixture
def small_tmp(tmp_path: Path) -> Iterator[Path]:
    """TMPDIR's disk: a 160 MiB tmpfs (needs root; skipped otherwise)."""
    with mounted_tmpfs(tmp_path / "tmpfs", size_mib=160) as mount:
        yield mount


@pytest.fixture
def worker_env(fault_origin: FaultOrigin) -> dict[str, str]:
    return {"FANFETCH_ALLOW_HOSTS": f"127.0.0.1:{fault_origin.port}"}


@pytest.fixture
def tmpfs_worker(worker, fault_origin: FaultOrigin, small_tmp: Path, monkeypatch):
    """The shared worker (tests/handlers/conftest.py), its container started with TMPDIR on the small disk; moto
    (which stands in for S3 in this same process and spools objects to the temp folder too) keeps the ordinary
    one afterwards."""
    module, s3, sqs, dlq, _ = worker
    with monkeypatch.context() as cold_start:
        cold_start.setenv("TMPDIR", str(small_tmp))
        cold_start.setattr(tempfile, "tempdir", None)  # gettempdir() caches its first answer
        module._app = build_worker_app()
    assert module._app.ctx.spool_dir == str(small_tmp)
    return module, s3, sqs, dlq, fault_origin, small_tmp


def _group(origin: FaultOrigin, name: str, part_bytes: int, *, parts: int = 2, declare: bool = False) -> Group:
    sources = []
    for i in range(parts):
        url = origin.add(f"/{name}/{i}", BigBody(part_bytes, f"{name}-{i}"))
        sources.append(Source(url, size=part_bytes if declare else None))
    return Group(group_id=name, sources=tuple(sources), key=f"{name}.bin", merge=MergeMode.CONCAT)


def _dead(sqs, dlq):
    return sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])


@pytest.mark.slow
@pytest.mark.parametrize("declare", [False, True], ids=["sizes-unknown", "sizes-declared"])
def test_four_64_mib_groups_fit_a_160_mib_tmp_and_a_450_mib_group_is_dead_lettered_naming_sizes(tmpfs_worker, declare):
    # GIVEN TMPDIR on a 160 MiB tmpfs and a batch of four 64 MiB groups (2 x 32 MiB, merged) and one 450 MiB group
    module, s3, sqs, dlq, origin, tmp = tmpfs_worker
    small = [_group(origin, f"g{i}", 32 * MIB, declare=declare) for i in range(4)]
    big = _group(origin, "big", 225 * MIB, declare=declare)
    event = sqs_event([encode_message("job-spool", g) for g in [*small, big]])
    # WHEN the worker handles the batch once
    response = module.handler(event, FakeLambdaContext())
    # THEN nothing comes back: the four are stored byte-exact, the big one is dead-lettered with its sizes
    assert response == {"batchItemFailures": []}
    for group in small:
        head = s3.head_object(Bucket="out", Key=group.key)
        assert head["ContentLength"] == 64 * MIB
        assert head["Metadata"]["sha256"] == big_sha256([32 * MIB] * 2, [f"{group.group_id}-0",
                                                                                       f"{group.group_id}-1"])
    (dead,) = _dead(sqs, dlq)
    reason = dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert "spool" in reason and "MiB" in reason, reason
    assert dead["MessageAttributes"]["fanfetch-error-type"]["StringValue"] == "permanent"
    if declare:  # known in advance: refused before a single request
        assert origin.requests("/big/0") == 0 and origin.requests("/big/1") == 0
    # AND the groups in flight never held more than the budget (free space of the tmpfs minus the margin)
    spool = module._app.ctx.spool
    assert 128 * MIB <= spool.total <= 160 * MIB and spool.peak_used <= spool.total
    # AND nothing is left behind in /tmp
    assert list(tmp.iterdir()) == []


@pytest.fixture
def capped_worker(worker, fault_origin: FaultOrigin, monkeypatch):
    """The shared worker with its spool budget capped by FANFETCH_SPOOL_MAX_BYTES (no root needed; read when its
    app is built, at the first batch)."""
    monkeypatch.setenv("FANFETCH_SPOOL_MAX_BYTES", str(2 * MIB))
    module, s3, sqs, dlq, _ = worker
    return module, s3, sqs, dlq, fault_origin


def test_with_a_capped_spool_a_group_declaring_more_is_dead_lettered_on_first_sight_and_the_rest_fit(capped_worker):
    # GIVEN a 2 MiB spool cap, three merged groups of 2 x 256 KiB (1 MiB each) and one declaring 2 x 2 MiB
    module, s3, sqs, dlq, origin = capped_worker
    small = [_group(origin, f"s{i}", 256 * 1024) for i in range(3)]
    big = _group(origin, "big", 2 * MIB, declare=True)
    event = sqs_event([encode_message("job-cap", g) for g in [*small, big]])
    # WHEN the worker handles the batch
    response = module.handler(event, FakeLambdaContext())
    # THEN the small ones are stored (never more than the cap in flight) and the big one is dead-lettered at once,
    # its reason naming both sizes, without a request
    assert response == {"batchItemFailures": []}
    for group in small:
        assert s3.head_object(Bucket="out", Key=group.key)["ContentLength"] == 512 * 1024
    spool = module._app.ctx.spool
    assert spool.total == 2 * MIB and spool.peak_used <= 2 * MIB
    (dead,) = _dead(sqs, dlq)
    reason = dead["MessageAttributes"]["fanfetch-error"]["StringValue"]
    assert "8.0 MiB of temp space" in reason and "spool budget is 2.0 MiB" in reason, reason
    assert origin.requests("/big/0") == 0 and origin.requests("/big/1") == 0
