"""The terminal view of a local run: a live progress display (rich) and the closing summary.

The display is two short lines, so every number stays readable in an 80-column terminal::

    groups ━━━━━━━━━━━━━━━━━━━━━━━━━━ 1,234/8,324 1,230 ok 4 failed
    32,101 files 1.2 GiB · 120 files/s 4.5 MiB/s · 0:04:31 · ETA 0:25:10
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from fanfetch.app.local_run import RunProgress, RunSummary
from fanfetch.core.models import GroupResult
from fanfetch.core.units import format_bytes, plural

__all__ = ["ProgressView", "print_summary"]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _TwoLines(Progress):
    """The bar with the group counts, then one line of details."""

    def __init__(self, *columns: object, details: object, **kwargs: object):
        self._details = details  # before Progress.__init__, which may draw already
        super().__init__(*columns, **kwargs)  # type: ignore[arg-type]

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self._details(), no_wrap=True, overflow="ellipsis")  # type: ignore[operator]


class ProgressView:
    """A live bar over groups with ok/failed, then files, bytes, rate, elapsed and ETA; silent when not a
    terminal."""

    def __init__(self, counters: RunProgress, console: Console):
        self.counters = counters
        self._console = console
        self._progress = _TwoLines(
            TextColumn("[bold]groups"),
            BarColumn(bar_width=None),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/]"),
            details=self.details,
            console=console,
            disable=not console.is_terminal,
            refresh_per_second=4,
            expand=False,
        )
        self._task = self._progress.add_task("groups", total=counters.total_groups, ok="0", failed="0")

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def details(self) -> str:
        """``12,345 files 1.2 GiB · 45 files/s 3.1 MiB/s · 0:01:02 · ETA 0:10:00``."""
        progress = getattr(self, "_progress", None)
        if progress is None or not progress.tasks:  # drawn while being built
            return ""
        c = self.counters
        task = progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = f" · {c.files / elapsed:,.0f} files/s {format_bytes(c.bytes / elapsed)}/s" if elapsed > 0 else ""
        return (f"{plural(c.files, 'file')} {format_bytes(c.bytes)}{rate} · {_clock(elapsed)}"
                f" · ETA {_clock(task.time_remaining)}")

    def update(self, result: GroupResult) -> None:
        self.counters.record(result)
        c = self.counters
        self._progress.update(self._task, completed=c.ok + c.failed, ok=f"{c.ok:,}",
                              failed=f"{c.failed:,}")


def print_summary(summary: RunSummary, *, dest: str, console: Console, show_failures: int = 10) -> None:
    """The closing lines: counts, rate, where the outputs and the results manifest are, first failures."""
    rate = summary.files / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    state = "interrupted" if summary.interrupted else "done"
    not_started = f", {summary.not_started:,} not started" if summary.not_started else ""
    console.print(
        f"job {summary.job_id} {state}: {summary.ok:,} ok ({summary.skipped:,} already stored), "
        f"{summary.failed:,} failed{not_started}; {plural(summary.files, 'file')}, {format_bytes(summary.bytes)} "
        f"in {summary.elapsed_s:.1f} s ({rate:,.0f} files/s)",
        highlight=False, markup=False,
    )
    if summary.refreshed:
        console.print(f"refresh: {summary.changed:,} changed or new, {summary.unchanged:,} unchanged, "
                      f"{summary.failed:,} failed", highlight=False, markup=False)
    console.print(f"outputs: {dest}   results: {dest.rstrip('/')}/{summary.results_key}", highlight=False, markup=False)
    for group_id, error in summary.failures[:show_failures]:
        console.print(f"  failed {group_id}: {error}", highlight=False, markup=False)
    shown = min(len(summary.failures), show_failures)
    if summary.failed > shown:
        console.print(f"  … and {summary.failed - shown:,} more (see the results manifest)",
                      highlight=False, markup=False)
    if summary.not_started:
        console.print(f"  {plural(summary.not_started, 'group')} not started: run the same command again to "
                      f"resume (stored groups are skipped)", highlight=False, markup=False)
    if summary.results_error:
        console.print(summary.results_error, style="red", highlight=False, markup=False)
