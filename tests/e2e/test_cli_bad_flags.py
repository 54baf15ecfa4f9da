"""Bad flags, values and environment through the installed ``fanfetch`` command: exit 2 and one line naming
the problem, never a traceback; ``AWS_REGION`` honoured by every command; a manifest's first 20 problems."""

from __future__ import annotations

import json

import pytest

from tests.e2e.cli_process import assert_one_line_error, run_cli

URL = "https://data.example/a.csv"


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"group": "a", "urls": [URL]}) + "\n")
    return str(path)


BAD_RUN_FLAGS = {
    "empty s3 uri": (["--out", "s3://"], "no bucket"),
    "bad bucket name": (["--out", "s3://My_Bucket/x"], "not a valid S3 bucket name"),
    "empty out": (["--out", ""], "empty destination"),
    "other scheme": (["--out", "gs://bucket/x"], "only local folders and s3://"),
    "port out of range": (["--out", "o", "--allow-host", "127.0.0.1:99999"], "port '99999'"),
    "colons only": (["--out", "o", "--allow-host", "::::"], "'::::'"),
    "no host": (["--out", "o", "--allow-host", ":8080"], "':8080'"),
    "huge concurrency": (["--out", "o", "--concurrency", "100000000000"], "more than 4,096"),
    "zero concurrency": (["--out", "o", "--concurrency", "0"], "at least 1"),
    "negative rps": (["--out", "o", "--per-host-rps", "-1"], "above 0"),
    "endpoint not http": (["--out", "s3://bucket", "--endpoint-url", "ftp://x"], "http(s)://"),
    "bad merge": (["--out", "o", "--merge", "zip"], "zip"),
}


@pytest.mark.parametrize("name", sorted(BAD_RUN_FLAGS))
def test_a_bad_run_flag_exits_2_with_one_line_and_writes_nothing(tmp_path, manifest, name):
    # GIVEN a valid manifest and one bad flag
    flags, needle = BAD_RUN_FLAGS[name]
    # WHEN fanfetch run is started with it
    ran = run_cli("run", manifest, *flags, cwd=str(tmp_path))
    # THEN exit 2, one usage line naming the value, nothing downloaded or written
    line = assert_one_line_error(ran, needle)
    assert line.startswith("fanfetch run: error: argument")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


@pytest.mark.parametrize("argv", [
    ["worker", "--queue-url", "http://127.0.0.1:1/q", "--bucket", "b", "--per-host-rps", "-2"],
    ["worker", "--queue-url", "http://127.0.0.1:1/q", "--bucket", "b", "--concurrency", "99999"],
    ["demo", "--latency-ms", "-5"],
    ["plan", "m.jsonl", "--per-file-s", "1", "--allow-host", "a:b:c"],
    ["status", "J", "--stack", "S", "--endpoint-url", "localhost:4566"],
    ["report", "J", "--stack", "S", "--endpoint-url", "nope"],
])
def test_bad_flags_of_other_commands_exit_2_with_one_line(tmp_path, manifest, argv):
    ran = run_cli(*argv, cwd=str(tmp_path), keep_aws=False)
    assert_one_line_error(ran, "error: argument")


def test_a_bad_allow_hosts_variable_exits_2_naming_it(tmp_path, manifest):
    ran = run_cli("run", manifest, "--out", str(tmp_path / "o"), env={"FANFETCH_ALLOW_HOSTS": "ok.example, bad:0"})
    assert_one_line_error(ran, "FANFETCH_ALLOW_HOSTS", "'bad:0'")
    assert not (tmp_path / "o").exists()


def test_report_for_a_stack_without_a_region_is_one_line_exit_2(tmp_path):
    # GIVEN no AWS configuration at all; WHEN a stack's report is asked for
    ran = run_cli("report", "JOB", "--stack", "X", keep_aws=False, cwd=str(tmp_path))
    # THEN one line saying what to configure, exit 2
    assert_one_line_error(ran, "AWS configuration", "region")


def test_a_destination_with_brackets_is_printed_as_given(tmp_path, demo_origin):
    # GIVEN a folder name that looks like console markup
    path = tmp_path / "m.jsonl"
    url = demo_origin.url_template.format(station_id=1007, year=1990)
    path.write_text(json.dumps({"group": "s", "urls": [url]}) + "\n")
    # WHEN it is the destination
    ran = run_cli("run", str(path), "--out", "o[/]x", "--merge", "csv", "--allow-host", demo_origin.host_port,
                  "--quiet", cwd=str(tmp_path))
    # THEN the run succeeds and names it verbatim
    assert ran.code == 0, ran.err
    assert "→ o[/]x" in ran.out and "outputs: o[/]x" in ran.out
    assert (tmp_path / "o[" / "]x" / "s.csv").is_file()


@pytest.mark.parametrize("argv", [["status", "J1"], ["failures", "J1"], ["finish", "J1"], ["redrive"],
                                  ["report", "J1"]])
def test_aws_region_alone_is_honoured_by_every_stack_command(moto_server, argv):
    # GIVEN only AWS_REGION (no AWS_DEFAULT_REGION), as Lambda, ECS and the other SDKs set it
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1",
           "AWS_ENDPOINT_URL": moto_server}
    # WHEN a command looks up a stack that does not exist
    ran = run_cli(*argv, "--stack", "nope", env=env, keep_aws=False)
    # THEN it reached CloudFormation in that region (stack not found), not "You must specify a region"
    line = assert_one_line_error(ran, "stack 'nope' not found")
    assert "specify a region" not in line


def test_submit_honours_aws_region_too(moto_server, manifest):
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1",
           "AWS_ENDPOINT_URL": moto_server}
    ran = run_cli("submit", manifest, "--stack", "nope", env=env, keep_aws=False)
    line = assert_one_line_error(ran, "stack 'nope' not found")
    assert "specify a region" not in line


def test_a_manifest_with_many_problems_reports_the_first_20_at_once(tmp_path):
    # GIVEN a manifest whose lines 2..31 are bad in different ways, and line 1 fine
    lines = [json.dumps({"group": "ok", "urls": [URL]})]
    for i in range(30):
        bad = [{"group": f"g{i}", "urls": []}, {"group": f"g{i}", "urls": ["ftp://x/y"]}, {"urls": [URL]}][i % 3]
        lines.append(json.dumps(bad))
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # WHEN it is run
    ran = run_cli("run", str(path), "--out", str(tmp_path / "o"))
    # THEN exit 2: the first 20 problems, one line each in line order, then where it stopped; no traceback
    assert ran.code == 2 and "Traceback" not in ran.err
    errs = ran.err_lines
    assert len(errs) == 21, ran.err
    assert [e.split(":")[3] for e in errs[:20]] == [str(n) for n in range(2, 22)]
    assert all(e.startswith(f"fanfetch: error: {path}:") for e in errs)
    assert "first 20 problems" in errs[20]
    assert not (tmp_path / "o").exists()


def test_csv_duplicates_and_bad_rows_are_reported_together(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(f"group,url,key\na,{URL},a.csv\nb,notaurl,b.csv\nc,{URL},a.csv\n")
    ran = run_cli("run", str(path), "--out", str(tmp_path / "o"))
    assert ran.code == 2
    assert [e.split(":")[3] for e in ran.err_lines] == ["3", "4"], ran.err
