"""``fanfetch report`` end to end: from a deployed stack's ledger (moto), and drawn by a real browser:
headless Chromium loads the page from file:// (no network), screenshots it and dumps its DOM; the
chart and the failures table must be on screen."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from rich.console import Console

from fanfetch.adapters.ledger_dynamodb import DynamoDBLedger
from fanfetch.adapters.ledger_dynamodb_items import create_ledger_table
from fanfetch.cli.main import main
from fanfetch.core.ledger import GroupRecord

JOB_ID = "3f9a1c0d2b7e4a55"
T0 = 1_700_000_000.0
GROUPS, SPAN_S = 300, 60  # one group finishes every 0.2 s for a minute → 60 one-second bars
FAILED_AT = (20, 90, 150, 210, 280)  # in five different seconds
XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'

BAR_RGB, LINE_RGB = (0x3B, 0x82, 0xC4), (0xE8, 0x87, 0x1E)  # --bar and --cum in fanfetch.app.report's CSS

_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    _CHROMIUM is None,
    reason="Debian's chromium is not installed (CI installs it: apt-get install -y chromium)",
)


def _write_results(dest: Path) -> None:
    """A finished local run as ``fanfetch run`` leaves it: 295 groups stored, 5 failed."""
    lines = []
    for i in range(GROUPS):
        failed = i in FAILED_AT
        finished = T0 + round((i + 1) * SPAN_S / GROUPS, 3)
        files = 10 + i % 7
        lines.append({
            "group": f"station-{i:04d}", "status": "failed" if failed else "ok",
            "key": f"stations/station-{i:04d}.csv", "files": files, "bytes": 0 if failed else files * 48_000,
            "sha256": None if failed else "ab" * 32, "attempts": files + i % 3,
            "error": f"HTTP 503 from https://example.org/bulk?stationID={i} {XSS}" if failed else None,
            "skipped": False, "started_at": max(T0, finished - 1.5), "finished_at": finished,
        })
    folder = dest / "_jobs" / JOB_ID
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _report(argv: list[str]) -> int:
    """``fanfetch report ARGV`` through the real command (``fanfetch.cli.main.main``)."""
    return main(["report", *argv], console=Console(file=io.StringIO()))


_STACK_OUTPUTS = {"BucketName": "bucket", "QueueUrl": "https://sqs/q", "DeadLetterQueueUrl": "https://sqs/dlq",
                  "ProducerFunctionName": "producer", "WorkerFunctionName": "worker", "LedgerTableName": "ledger"}


def test_report_from_a_stack_reads_its_dynamodb_ledger(tmp_path: Path, aws_env: str) -> None:
    # GIVEN a deployed stack (its outputs name the ledger table) whose job has 3 of 3 verdicts, one failed
    with mock_aws():
        outputs = {k: {"Value": v} for k, v in _STACK_OUTPUTS.items()}
        template = {"Resources": {"H": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
        boto3.client("cloudformation").create_stack(StackName="Fetch", TemplateBody=json.dumps(template))
        dynamodb = boto3.client("dynamodb")
        create_ledger_table(dynamodb, "ledger")
        ledger = DynamoDBLedger(dynamodb, "ledger")
        ledger.open_job("j1", total_groups=3, total_files=6, results_location="s3://bucket/_jobs/j1/", now=T0)
        for i, status in enumerate(("ok", "ok", "failed")):
            ledger.record_group(GroupRecord(
                job_id="j1", group_id=f"g{i}", status=status, key=f"g{i}.csv", files=2, bytes=10, attempts=2,
                error="HTTP 404 <b>gone</b>" if status == "failed" else None,
                started_at=T0 + i, finished_at=T0 + i + 1))

        # WHEN `fanfetch report j1 --stack Fetch --html FILE`
        target = tmp_path / "stack-report.html"
        assert _report(["j1", "--stack", "Fetch", "--html", str(target)]) == 0

    # THEN the page shows the finished job with its failure, from the stack's table
    page = target.read_text()
    assert "finished · 1 failed" in page
    assert page.count('<rect class="bar"') >= 1
    assert "HTTP 404 &lt;b&gt;gone&lt;/b&gt;" in page
    assert "stack Fetch (table ledger)" in page
    assert "s3://bucket/_jobs/j1/" in page


def test_report_from_a_stack_without_a_ledger_says_to_redeploy(aws_env: str, capsys) -> None:
    # GIVEN a stack deployed before the ledger existed (no LedgerTableName output)
    with mock_aws():
        outputs = {k: {"Value": v} for k, v in _STACK_OUTPUTS.items() if k != "LedgerTableName"}
        template = {"Resources": {"H": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
        boto3.client("cloudformation").create_stack(StackName="Old", TemplateBody=json.dumps(template))
        # WHEN / THEN the report is refused with what to do
        assert _report(["j1", "--stack", "Old"]) == 2
        assert "no LedgerTableName output: redeploy" in capsys.readouterr().err


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on ``page``: no GPU, no background traffic, a throwaway profile."""
    return subprocess.run(
        [_CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}", "--window-size=1200,1600",
         *extra, page.as_uri()],
        capture_output=True, text=True, timeout=90, check=True,
        env={**os.environ, "HOME": str(profile)},
    )


def _decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of pixel bytes, bytes per pixel) of an 8-bit RGB/RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def _pixels_like(rows: list[bytes], bpp: int, rgb: tuple[int, int, int], tolerance: int = 8) -> list[tuple[int, int]]:
    found = []
    for y, row in enumerate(rows):
        for x in range(0, len(row), bpp):
            if all(abs(row[x + k] - rgb[k]) <= tolerance for k in range(3)):
                found.append((x // bpp, y))
    return found


class _Dom(HTMLParser):
    """Counts what the test cares about in Chromium's serialized DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.bars = self.fail_marks = self.cumulative = self.scripts = self.images = 0
        self.failure_rows: list[list[str]] = []
        self._in_failures = self._in_tbody = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        self.bars += tag == "rect" and "bar" in classes
        self.fail_marks += tag == "circle" and "fail-mark" in classes
        self.cumulative += tag == "polyline" and "cumulative" in classes
        self.scripts += tag == "script"
        self.images += tag == "img"
        if tag == "table" and dict(attrs).get("id") == "failures":
            self._in_failures = True
        elif tag == "tbody" and self._in_failures:
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.failure_rows.append([])
        elif tag == "td" and self._in_tbody:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_failures = self._in_tbody = False
        elif tag == "td" and self._cell is not None:
            self.failure_rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.slow
@needs_chromium
def test_report_page_draws_chart_and_failures_in_chromium(tmp_path: Path) -> None:
    # GIVEN a finished local run: 300 groups over 60 s, 5 failed with hostile error text
    dest = tmp_path / "out"
    _write_results(dest)

    # WHEN `fanfetch report JOB --out-dir DEST` writes the page and Chromium renders it from file://
    assert _report([JOB_ID[:8], "--out-dir", str(dest)]) == 0
    page = dest / "_jobs" / JOB_ID / "report.html"
    shot = tmp_path / "report.png"
    _chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}", "--hide-scrollbars")
    dom = _Dom()
    dom.feed(_chromium(page, tmp_path / "profile-dom", "--dump-dom").stdout)

    # THEN the DOM has one bar per second, the cumulative line, a marker per failing second,
    # and the failures table with exactly the 5 failed groups, their error text shown, not executed
    assert dom.bars == SPAN_S
    assert dom.cumulative == 1
    assert dom.fail_marks == len(FAILED_AT)
    assert [row[0] for row in dom.failure_rows] == [f"station-{i:04d}" for i in FAILED_AT]
    assert all(XSS in row[3] for row in dom.failure_rows)
    assert dom.scripts == 0 and dom.images == 0

    # AND the screenshot shows the chart: a large block of bar colour with the line across it,
    # and real variation (not a blank or single-colour page) inside the chart's area
    width, height, rows, bpp = _decode_png(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    bar_pixels = _pixels_like(rows, bpp, BAR_RGB)
    assert len(bar_pixels) > 30_000, f"only {len(bar_pixels)} bar-coloured pixels"
    xs, ys = [x for x, _ in bar_pixels], [y for _, y in bar_pixels]
    left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
    assert right - left > 700 and bottom - top > 150, (left, right, top, bottom)
    chart_rows = rows[top:bottom + 1]
    line_pixels = _pixels_like(chart_rows, bpp, LINE_RGB, tolerance=24)
    assert len(line_pixels) > 300, f"only {len(line_pixels)} pixels of the cumulative line"
    luminance = [sum(row[x:x + 3]) for row in chart_rows[::4] for x in range(left * bpp, right * bpp, 4 * bpp)]
    mean = sum(luminance) / len(luminance)
    variance = sum((v - mean) ** 2 for v in luminance) / len(luminance)
    assert variance > 1_000, f"chart area looks flat (variance {variance:.0f})"
