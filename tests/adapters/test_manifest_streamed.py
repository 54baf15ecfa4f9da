"""The local runner's manifest loader: checked whole, read again when run; stdin spooled; errors as before."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fanfetch.adapters.manifests import load_job, load_streamed_job
from fanfetch.core.models import MergeMode
from fanfetch.errors import ManifestError


def write(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_manifest_file_is_checked_then_read_again_group_by_group(tmp_path: Path) -> None:
    # GIVEN a JSON Lines manifest
    path = write(tmp_path / "m.jsonl", *({"group": f"g{i}", "urls": [f"https://h.example/{i}.csv"]} for i in range(5)))
    # WHEN it is loaded for streaming
    job = load_streamed_job(str(path), default_merge=MergeMode.CSV)
    # THEN its id and sizes are load_job's, and each iteration reads the same groups in order
    whole = load_job(str(path), default_merge=MergeMode.CSV)
    assert (job.job_id, job.group_count, job.file_count) == (whole.job_id, 5, 5)
    assert tuple(job.iter_groups()) == whole.groups == tuple(job.iter_groups())


@pytest.mark.parametrize("records", [
    [{"group": "a", "urls": ["https://h/1"]}, {"group": "a", "urls": ["https://h/2"]}],
    [{"group": "a", "urls": ["https://h/1"], "key": "K"}, {"group": "b", "urls": ["https://h/2"], "key": "k"}],
    [{"group": "a", "urls": ["https://h/1"], "key": "d"}, {"group": "b", "urls": ["https://h/2"], "key": "d/x"}],
    [{"group": "a", "urls": ["https://h/1"]}, {"group": "b", "urls": ["mailto:x"]}, {"group": "c", "urls": []}],
])
def test_a_bad_manifest_fails_with_exactly_the_whole_loaders_error(tmp_path: Path, records: list[object]) -> None:
    # GIVEN a manifest breaking a rule
    path = write(tmp_path / "m.jsonl", *records)
    # WHEN both loaders read it / THEN both raise the same one-line error
    with pytest.raises(ManifestError) as whole:
        load_job(str(path), default_merge=MergeMode.CONCAT)
    with pytest.raises(ManifestError) as streamed:
        load_streamed_job(str(path), default_merge=MergeMode.CONCAT)
    assert str(streamed.value) == str(whole.value)


def test_a_missing_manifest_is_the_same_error_as_before(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ManifestError) as info:
        load_streamed_job(str(missing), default_merge=MergeMode.CONCAT)
    assert str(info.value) == f"{missing}: cannot read manifest: No such file or directory"


def test_stdin_is_spooled_so_it_can_be_read_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a manifest arriving on stdin (a stream that can be read once)
    data = "".join(json.dumps({"group": f"s{i}", "urls": [f"https://h.example/{i}"]}) + "\n" for i in range(3))
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(data.encode())))
    # WHEN "-" is loaded
    job = load_streamed_job("-", default_merge=MergeMode.CONCAT)
    # THEN it was checked, and its groups can be read (more than once)
    assert job.group_count == 3
    assert [g.group_id for g in job.iter_groups()] == ["s0", "s1", "s2"] == [g.group_id for g in job.iter_groups()]


def test_a_bad_manifest_on_stdin_names_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(b'{"group": "a"}\n')))
    with pytest.raises(ManifestError) as info:
        load_streamed_job("-", default_merge=MergeMode.CONCAT)
    assert str(info.value).startswith("stdin:1: urls: ")


def test_a_file_changed_after_the_check_is_refused_when_read_again(tmp_path: Path) -> None:
    # GIVEN a checked manifest that is then rewritten
    path = write(tmp_path / "m.jsonl", {"group": "a", "urls": ["https://h/1"]})
    job = load_streamed_job(str(path), default_merge=MergeMode.CONCAT)
    write(path, {"group": "a", "urls": ["https://h/1"]}, {"group": "a", "urls": ["https://h/2"]})
    os.utime(path, ns=(1, 1))
    # WHEN its groups are read / THEN the run is refused rather than given unchecked groups
    with pytest.raises(ManifestError, match="changed after it was checked"):
        list(job.iter_groups())


def test_a_csv_with_scattered_rows_is_held_whole_as_before(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("group,url\na,https://h/1\nb,https://h/2\na,https://h/3\n")
    job = load_streamed_job(str(path), default_merge=MergeMode.CSV)
    assert [g.urls for g in job.iter_groups()] == [("https://h/1", "https://h/3"), ("https://h/2",)]
    assert job.job_id == load_job(str(path), default_merge=MergeMode.CSV).job_id


def test_a_job_spec_reads_its_table_beside_it_and_streams(tmp_path: Path) -> None:
    (tmp_path / "sites.csv").write_text("site,first,last\nx,2000,2001\ny,2001,2001\n")
    spec = tmp_path / "job.toml"
    spec.write_text('[job]\nurl = "https://h.example/{site}/{year}.csv"\ngroup = "{site}"\n'
                    '[table]\npath = "sites.csv"\n[expand]\nyear = {from = "first", to = "last"}\n')
    job = load_streamed_job(str(spec), default_merge=MergeMode.CSV)
    whole = load_job(str(spec), default_merge=MergeMode.CSV)
    assert (job.job_id, job.group_count, job.file_count) == (whole.job_id, 2, 3)
    assert tuple(job.iter_groups()) == whole.groups
