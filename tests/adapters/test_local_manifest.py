"""Reading manifests from local files: tables resolve beside the spec, OS errors become ManifestError."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanfetch.adapters.local_files import load_manifest
from fanfetch.core.models import MergeMode
from fanfetch.errors import ManifestError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_spec_reads_its_table_relative_to_itself_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a spec and its table in one folder, and the process running somewhere else
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "job.toml").write_text(
        '[job]\nurl = "https://h.example/{site}/{year}.csv"\ngroup = "{site}"\n'
        '[table]\npath = "data/sites.csv"\n[expand]\nyear = {from = "first", to = "last"}\n'
    )
    (folder / "data").mkdir()
    (folder / "data" / "sites.csv").write_text("site,first,last\nx,2000,2001\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # WHEN it is loaded by a relative path
    job = load_manifest("../jobs/job.toml", default_merge=MergeMode.CSV)
    # THEN the table was found beside the spec
    assert [(g.group_id, g.key, g.urls) for g in job.groups] == [
        ("x", "x.csv", ("https://h.example/x/2000.csv", "https://h.example/x/2001.csv"))
    ]


def test_a_missing_manifest_or_a_folder_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ManifestError) as info:
        load_manifest(str(missing))
    assert str(info.value) == f"{missing}: cannot read manifest: No such file or directory"
    with pytest.raises(ManifestError) as info:
        load_manifest(str(tmp_path))
    assert str(info.value).startswith(f"{tmp_path}: cannot read manifest: ")


def test_a_missing_table_names_the_spec_line_and_the_resolved_path(tmp_path: Path) -> None:
    # GIVEN a spec whose table is not there
    spec = tmp_path / "job.toml"
    spec.write_text('[job]\nurl = "https://h.example/{a}"\ngroup = "{a}"\n\n[table]\npath = "gone.csv"\n')
    # WHEN it is loaded / THEN the error names the spec's line and the file it tried
    with pytest.raises(ManifestError) as info:
        load_manifest(str(spec))
    assert str(info.value) == (
        f"{spec}:6: table.path: {tmp_path / 'gone.csv'}: cannot read file: No such file or directory"
    )


def test_a_bad_line_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"group,url\r\n1,https://h.example/a\r\n2,gopher://h.example/b\r\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(str(manifest))
    assert str(info.value).startswith(f"{manifest}:3: url: URL scheme must be http or https")


@pytest.mark.parametrize(
    ("name", "groups", "files"),
    [("climate/job.toml", 3, 6), ("manifest.jsonl", 2, 3), ("manifest.csv", 2, 3)],
)
def test_the_shipped_examples_parse(name: str, groups: int, files: int) -> None:
    job = load_manifest(str(EXAMPLES / name))
    assert (len(job.groups), job.file_count) == (groups, files)
