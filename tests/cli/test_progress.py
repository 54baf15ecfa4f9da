"""The live progress display of ``fanfetch run``: every number readable in an 80-column terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fanfetch.app.local_run import RunProgress
from fanfetch.cli.progress import ProgressView
from fanfetch.core.models import GroupResult, GroupStatus
from fanfetch.core.units import plural


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_display_keeps_every_number_whole_at_80_columns_and_wider(width):
    # GIVEN the motivating job near its end: six-digit counts, gigabytes
    counters = RunProgress(total_groups=194_204, total_files=1_200_000, ok=194_199, failed=4, files=1_199_990,
                           bytes=37 * 2**30)
    console = Console(width=width, force_terminal=True, record=True, file=io.StringIO(), color_system=None)
    view = ProgressView(counters, console)
    view._progress.tasks[0].start_time = view._progress.get_time() - 4000  # 1 h 6 min into the run
    # WHEN one more group is stored and the display is drawn
    view.update(GroupResult(group_id="x", status=GroupStatus.OK, key="x.csv", files=10, bytes=2**20))
    console.print(view._progress.get_renderable())
    lines = [line.rstrip() for line in console.export_text().splitlines() if line.strip()]
    # THEN two lines, none longer than the terminal, every count whole
    assert len(lines) == 2 and all(len(line) <= width for line in lines), lines
    assert "194,204/194,204" in lines[0] and "194,200 ok" in lines[0] and "4 failed" in lines[0]
    assert lines[1].startswith("1,200,000 files 39.7 GB · 300 files/s 9.9 MB/s · 1:06:40 · ETA "), lines[1]


def test_a_not_started_group_is_neither_done_nor_a_failure():
    counters = RunProgress(total_groups=2, total_files=2)
    view = ProgressView(counters, Console(file=io.StringIO()))
    view.update(GroupResult(group_id="a", status=GroupStatus.FAILED, key="a", files=1, started=False,
                            error="not started"))
    assert (counters.failed, counters.not_started) == (0, 1)
    assert view._progress.tasks[0].completed == 0


def test_plural():
    assert [plural(0, "group"), plural(1, "group"), plural(1234, "file")] == ["0 groups", "1 group", "1,234 files"]
