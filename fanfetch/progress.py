"""The terminal view of a local run: a live progress bar (rich) and the closing summary."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fanfetch.core.models import GroupResult
from fanfetch.core.units import format_bytes
from fanfetch.local_run import RunProgress, RunSummary

__all__ = ["ProgressView", "format_bytes", "print_summary"]


class ProgressView:
    """A live bar over groups with ok/failed, files, bytes, rate and ETA; silent when not a terminal."""

    def __init__(self, counters: RunProgress, console: Console):
        self.counters = counters
        self._console = console
        self._progress = Progress(
            TextColumn("[bold]groups"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/]"),
            TextColumn("{task.fields[files]} files {task.fields[bytes]} {task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(
            "groups", total=counters.total_groups, ok=0, failed=0, files=0, bytes="0 B", rate=""
        )

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, result: GroupResult) -> None:
        self.counters.record(result)
        c = self.counters
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = f"{c.files / elapsed:,.0f} files/s {format_bytes(c.bytes / elapsed)}/s" if elapsed > 0 else ""
        self._progress.update(
            self._task, completed=c.ok + c.failed, ok=c.ok, failed=c.failed, files=f"{c.files:,}",
            bytes=format_bytes(c.bytes), rate=rate,
        )


def print_summary(summary: RunSummary, *, dest: str, console: Console, show_failures: int = 10) -> None:
    """The closing lines: counts, rate, where the outputs and the results manifest are, first failures."""
    rate = summary.files / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    state = "interrupted" if summary.interrupted else "done"
    console.print(
        f"job {summary.job_id} {state}: {summary.ok} ok ({summary.skipped} already stored), {summary.failed} failed; "
        f"{summary.files:,} files, {format_bytes(summary.bytes)} in {summary.elapsed_s:.1f} s ({rate:,.0f} files/s)",
        highlight=False,
    )
    if any(r.change for r in summary.results):
        console.print(f"refresh: {summary.changed} changed or new, {summary.unchanged} unchanged, "
                      f"{summary.failed} failed", highlight=False, markup=False)

    console.print(f"outputs: {dest}   results: {dest.rstrip('/')}/{summary.results_key}", highlight=False, markup=False)

    failures = [r for r in summary.results if not r.ok]
    for result in failures[:show_failures]:
        console.print(f"  failed {result.group_id}: {result.error}", highlight=False, markup=False)

    if len(failures) > show_failures:
        console.print(f"  … and {len(failures) - show_failures} more (see the results manifest)",
            highlight=False, markup=False)
    if summary.results_error:
        console.print(summary.results_error, style="red", highlight=False, markup=False)

