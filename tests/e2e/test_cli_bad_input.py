"""Bad input to ``fanfetch run``: exit 2, one line naming file:line and the problem, nothing written."""

from __future__ import annotations

import pytest

from fanfetch.cli.main import main

U = "https://data.example/a.csv"
CASES = {
    "bad_json.jsonl": (b'{"group": "a", "urls": ["' + U.encode() + b'"]}\n{"group": "b", "urls": [\n', ":2:"),
    "bad_quoting.csv": (b'group,url\na,"' + U.encode() + b'\nb,' + U.encode() + b"\n", ":2:"),
    "duplicate.jsonl": (b'{"group": "a", "urls": ["' + U.encode() + b'"]}\n{"group": "a", "urls": ["' + U.encode()
                        + b'"]}\n', ":2:"),
    "empty_urls.jsonl": (b'{"group": "a", "urls": []}\n', ":1:"),
    "unsafe_key.jsonl": (b'{"group": "a", "urls": ["' + U.encode() + b'"], "key": "../../etc/cron.d/x"}\n', ":1:"),
    "abs_key.csv": (b"group,url,key\na," + U.encode() + b",/etc/passwd\n", ":2:"),
    "placeholder.toml": (b'[job]\nurl = "https://d.example/{stationid}"\ngroup = "{station_id}"\n'
                         b'[table]\nrows = [{station_id = 1}]\n', ":2:"),
    "merge.jsonl": (b'{"group": "a", "urls": ["' + U.encode() + b'"], "merge": "zip"}\n', ":1:"),
    "long_line.jsonl": (b'{"group": "a", "urls": ["' + U.encode() + b'"]}\n{"group": "' + b"x" * 10_000_000
                        + b'"}\n', ":2:"),
    "non_utf8.csv": (b"group,url\na," + U.encode() + b"\nb,https://d.example/\xff\xfe.csv\n", ":3:"),
    "empty.jsonl": (b"", "empty.jsonl: "),
    "columns.csv": (b"station,link\na," + U.encode() + b"\n", ":1:"),
    "scheme.jsonl": (b'{"group": "a", "urls": ["file:///etc/passwd"]}\n', ":1:"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_malformed_manifest_exits_2_with_one_line_naming_file_and_line(tmp_path, capsys, name):
    # GIVEN a malformed manifest
    data, where = CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    dest = tmp_path / "out"
    # WHEN it is run
    code = main(["run", str(path), "--out", str(dest)])
    # THEN exit 2, one short line on stderr naming the file (and line), no traceback, nothing written
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"fanfetch: error: {path}") and where in err
    assert "\n" not in err and "Traceback" not in err and len(err) < 400
    assert not dest.exists()


def test_an_unreachable_manifest_path_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope" / "stations.jsonl"
    assert main(["run", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert str(missing) in capsys.readouterr().err
