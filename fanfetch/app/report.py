"""One self-contained HTML page about a job: summary, throughput over time (inline SVG), failures.

Pure rendering from ledger records (stdlib only, no I/O): no scripts, stylesheets or fonts are
fetched, so the file can be mailed, attached to a ticket or opened offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from fanfetch.app.throughput import Throughput, bucket_throughput, is_skipped, nice_bucket_s
from fanfetch.core.ledger import GroupRecord, JobRecord
from fanfetch.core.units import format_bytes

__all__ = ["render_report"]

# Chart geometry (SVG user units; the SVG scales to the page width).
_W, _H = 1000, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 72, 18, 46


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + " s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _format_elapsed(seconds: float) -> str:
    """Axis labels: 0:45, 12:30, 1:05:00."""
    if 0 < seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _format_time(epoch_s: float | None) -> str:
    if not epoch_s:
        return "—"
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_rate(count: float, seconds: float, unit: str) -> str:
    if seconds <= 0:
        return "—"
    rate = count / seconds
    return f"{rate:,.1f} {unit}/s" if rate < 100 else f"{rate:,.0f} {unit}/s"


def _nice_ticks(maximum: float, *, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``maximum``."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = math.ceil(maximum / step) * step
    return [i * step for i in range(round(top / step) + 1)]


def _aligned_ticks(maximum: float, divisions: int) -> list[float]:
    """Exactly ``divisions`` round steps from 0 past ``maximum``: a second axis that shares the grid lines."""
    if maximum <= 0:
        return [float(i) for i in range(divisions + 1)]
    raw = maximum / divisions
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(divisions + 1)]


def _tick_label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


# --- the chart ------------------------------------------------------------------------------------


def _render_chart(throughput: Throughput) -> str:
    buckets = throughput.buckets
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    bar_ticks = _nice_ticks(max(b.files for b in buckets))
    cum_ticks = _aligned_ticks(throughput.total_files, len(bar_ticks) - 1)
    bar_max, cum_max = bar_ticks[-1], cum_ticks[-1]
    slot = plot_w / len(buckets)
    gap = slot * 0.18 if slot >= 6 else 0.0

    def x_at(seconds: float) -> float:
        return _LEFT + seconds / throughput.span_s * plot_w

    parts: list[str] = [
        f'<svg id="throughput" class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg" '
        f'data-buckets="{len(buckets)}" data-bucket-s="{throughput.bucket_s:g}">',
        '<title id="chart-title">Files completed per time bucket, and cumulative files</title>',
    ]
    # Horizontal grid and the left axis (files per bucket).
    for tick in bar_ticks:
        y = bottom - tick / bar_max * plot_h
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis bar-axis" x="{_LEFT - 8}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{_e(_tick_label(tick))}</text>')
    # Right axis: cumulative files, one label per grid line.
    for tick in cum_ticks:
        y = bottom - tick / cum_max * plot_h
        parts.append(f'<text class="axis cum-axis" x="{_W - _RIGHT + 8}" y="{y + 4:.1f}" '
                     f'text-anchor="start">{_e(_tick_label(tick))}</text>')
    # Bars: one per bucket (empty buckets draw nothing visible but keep their tooltip).
    parts.append('<g class="bars">')
    for i, b in enumerate(buckets):
        height = b.files / bar_max * plot_h
        x = _LEFT + i * slot + gap / 2
        label = (f"{_format_elapsed(b.start_s)}–{_format_elapsed(b.start_s + throughput.bucket_s)}: "
                 f"{b.files:,} files, {format_bytes(b.bytes)}, {b.ok:,} groups stored"
                 + (f", {b.failed:,} failed" if b.failed else ""))
        parts.append(f'<rect class="bar" x="{x:.2f}" y="{bottom - height:.2f}" width="{max(slot - gap, 0.5):.2f}" '
                     f'height="{height:.2f}" data-files="{b.files}"><title>{_e(label)}</title></rect>')
    parts.append("</g>")
    # Failure markers under the axis, one per bucket that had failures.
    for i, b in enumerate(buckets):
        if b.failed:
            cx = _LEFT + (i + 0.5) * slot
            parts.append(f'<circle class="fail-mark" cx="{cx:.2f}" cy="{bottom + 7}" r="4">'
                         f'<title>{_e(f"{b.failed:,} group(s) failed in this interval")}</title></circle>')
    # The cumulative line, from the origin to the end of every bucket.
    points = [f"{_LEFT:.1f},{bottom:.1f}"]
    running = 0
    for i, b in enumerate(buckets):
        running += b.files
        points.append(f"{_LEFT + (i + 1) * slot:.1f},{bottom - running / cum_max * plot_h:.1f}")
    parts.append(f'<polyline class="cumulative" points="{" ".join(points)}"/>')
    # X axis with elapsed-time ticks.
    parts.append(f'<line class="x-axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    step = nice_bucket_s(throughput.span_s, max_buckets=8)
    for k in range(int(throughput.span_s / step + 1e-9) + 1):
        tick = k * step
        x = x_at(tick)
        parts.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>')
        parts.append(f'<text class="axis" x="{x:.1f}" y="{bottom + 26}" text-anchor="middle">'
                     f'{_e(_format_elapsed(tick))}</text>')
    parts.append(f'<text class="axis-title" x="{_LEFT - 46}" y="{_TOP + plot_h / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 {_LEFT - 46} {_TOP + plot_h / 2:.0f})">files per '
                 f'{_e(_format_duration(throughput.bucket_s))}</text>')
    parts.append(f'<text class="axis-title" x="{_W - _RIGHT + 56}" y="{_TOP + plot_h / 2:.0f}" '
                 f'text-anchor="middle" transform="rotate(90 {_W - _RIGHT + 56} {_TOP + plot_h / 2:.0f})">'
                 "cumulative files</text>")
    parts.append("</svg>")
    return "\n".join(parts)


# --- the page -------------------------------------------------------------------------------------

_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff;
        --bar:#3b82c4; --cum:#e8871e; --ok:#2f9e44; --bad:#d64545; --warn:#c77700; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 12px 18px; margin-bottom: 20px; }
h1 { font-size: 22px; margin: 0; font-weight: 650; }
h2 { font-size: 17px; margin: 0 0 4px; font-weight: 650; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.job-id { color: var(--muted); }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 13px; font-weight: 600;
         color: #fff; }
.badge.complete { background: var(--ok); } .badge.partial { background: var(--bad); }
.badge.running { background: var(--bar); }
.times { width: 100%; color: var(--muted); font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 12px; margin-bottom: 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 13px; font-variant-numeric: tabular-nums; }
.card .value.bad { color: var(--bad); } .card .value.good { color: var(--ok); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px;
          margin-bottom: 20px; }
.sub { color: var(--muted); font-size: 13px; margin: 0 0 10px; }
.legend { display: flex; gap: 18px; font-size: 13px; color: var(--muted); margin: 0 0 6px; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 12px; margin-right: 6px;
                       vertical-align: -1px; border-radius: 2px; }
.legend .l-bar::before { background: var(--bar); }
.legend .l-cum::before { height: 3px; vertical-align: 3px; background: var(--cum); }
.legend .l-fail::before { background: var(--bad); border-radius: 50%; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .x-axis, svg .tick { stroke: #9aa5b1; stroke-width: 1; }
svg .axis { fill: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
svg .axis-title { fill: var(--muted); font-size: 12px; }
svg .bar { fill: var(--bar); }
svg .bar:hover { fill: #24598a; }
svg .cumulative { fill: none; stroke: var(--cum); stroke-width: 2.5; stroke-linejoin: round; }
svg .fail-mark { fill: var(--bad); }
.note { background: #fff8e6; border: 1px solid #f3d9a4; border-radius: 8px; padding: 10px 12px; color: #6b4e00;
        font-size: 14px; margin: 8px 0 0; }
table { width: 100%; border-collapse: collapse; font-size: 14px; table-layout: fixed; }
col.c-group { width: 17%; } col.c-key { width: 25%; } col.c-attempts { width: 10%; }
th.num { text-align: right; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase;
     letter-spacing: .04em; border-bottom: 2px solid var(--line); padding: 6px 10px; }
td { border-bottom: 1px solid var(--line); padding: 7px 10px; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.err { color: #8a1c1c; overflow-wrap: anywhere; }
td { overflow-wrap: anywhere; }
tbody tr:nth-child(even) { background: #fafbfc; }
.none { color: var(--ok); margin: 4px 0 0; }
footer { color: var(--muted); font-size: 12px; text-align: center; }
"""


def _card(label: str, value: str, detail: str = "", *, tone: str = "") -> str:
    cls = f"value {tone}".strip()
    detail_html = f'<div class="detail">{_e(detail)}</div>' if detail else ""
    return (f'<div class="card"><div class="label">{_e(label)}</div>'
            f'<div class="{cls}">{_e(value)}</div>{detail_html}</div>')


def _status(job: JobRecord) -> tuple[str, str]:
    if not job.finished:
        return "running", "in progress"
    if job.failed:
        return "partial", f"finished · {job.failed:,} failed"
    return "complete", "complete"


def _last_finish(job: JobRecord, groups: Sequence[GroupRecord]) -> float:
    if job.finished_at:
        return job.finished_at
    return max((g.finished_at for g in groups), default=0.0)


def _render_summary(job: JobRecord, groups: Sequence[GroupRecord]) -> str:
    end = _last_finish(job, groups)
    elapsed = end - job.started_at if job.started_at and end else 0.0
    pending = max(job.total_groups - job.done, 0)
    skipped = sum(1 for g in groups if is_skipped(g))
    retries = sum(max(g.attempts - g.files, 0) for g in groups if not is_skipped(g))
    requests = sum(g.attempts for g in groups)
    share = f"{job.done / job.total_groups:.0%} done" if job.total_groups else "no groups"
    cards = [
        _card("Groups", f"{job.total_groups:,}", f"{share}" + (f" · {pending:,} pending" if pending else "")),
        _card("Stored", f"{job.ok:,}", f"{skipped:,} already there (skipped)" if skipped else "",
              tone="good" if job.ok else ""),
        _card("Failed", f"{job.failed:,}", "see the table below" if job.failed else "",
              tone="bad" if job.failed else ""),
        _card("Files", f"{job.files:,}", f"of {job.total_files:,} in the manifest" if job.total_files else ""),
        _card("Bytes", format_bytes(job.bytes), f"{job.bytes:,} B"),
        _card("Duration", _format_duration(elapsed) if elapsed else "—",
              "so far" if elapsed and not job.finished else ""),
        _card("Throughput", _format_rate(job.files, elapsed, "files"),
              f"{format_bytes(job.bytes / elapsed)}/s" if elapsed > 0 else ""),
        _card("Retries", f"{retries:,}", f"{requests:,} requests in all"),
    ]
    if job.changed or job.unchanged:
        cards.append(_card("Changed", f"{job.changed:,}", f"{job.unchanged:,} unchanged"))
    return f'<div class="cards" id="summary">{"".join(cards)}</div>'


def _render_throughput(job: JobRecord, groups: Sequence[GroupRecord]) -> str:
    throughput = bucket_throughput(groups, started_at=job.started_at)
    head = "<h2>Throughput</h2>"
    if throughput is None:
        reason = ("No group has finished yet." if not groups else
                  "These results carry no timestamps (written by an older fanfetch), so there is no chart.")
        return f'<section id="throughput-section">{head}<p class="note">{_e(reason)}</p></section>'
    peak = max(throughput.buckets, key=lambda b: b.files)
    sub = (f"Files completed per {_format_duration(throughput.bucket_s)} since "
           f"{_format_time(throughput.origin)}; peak {peak.files / throughput.bucket_s:,.1f} files/s.")
    note = ""
    if throughput.untimed:
        note = (f'<p class="note">{throughput.untimed:,} group(s) have no timestamp '
                "and are not in the chart.</p>")
    if throughput.earlier:
        note += (f'<p class="note">{throughput.earlier:,} group(s) were settled by an earlier run of this job '
                 "and are not in the chart, which shows the latest run.</p>")
    legend = ('<div class="legend"><span class="l-bar">files per interval</span>'
              '<span class="l-cum">cumulative files (right axis)</span>'
              '<span class="l-fail">interval with failed groups</span></div>')
    return (f'<section id="throughput-section">{head}<p class="sub">{_e(sub)}</p>{legend}'
            f"{_render_chart(throughput)}{note}</section>")


def _render_failures(groups: Sequence[GroupRecord]) -> str:
    failed = sorted((g for g in groups if g.status != "ok"), key=lambda g: (g.finished_at, g.group_id))
    head = f"<h2>Failures ({len(failed):,})</h2>"
    if not failed:
        return f'<section id="failures-section">{head}<p class="none">No group failed.</p></section>'
    rows = "".join(
        f'<tr><td class="mono">{_e(g.group_id)}</td><td class="key mono">{_e(g.key)}</td>'
        f'<td class="num">{g.attempts:,}</td><td class="err">{_e(g.error or "unknown error")}</td></tr>'
        for g in failed
    )
    return (f'<section id="failures-section">{head}'
            '<p class="sub">Re-run the same command to retry only these groups.</p>'
            '<table id="failures"><colgroup><col class="c-group"><col class="c-key"><col class="c-attempts"><col>'
            '</colgroup><thead><tr><th>Group</th><th>Key</th><th class="num">Attempts</th><th>Error</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>")


def render_report(
    job: JobRecord, groups: Sequence[GroupRecord], *, generated_at: float | None = None, source: str = ""
) -> str:
    """The report page for ``job`` as one HTML string; ``groups`` are its recorded verdicts.

    ``generated_at`` (epoch seconds) and ``source`` (where the records were read) go in the footer;
    every string that came from a record is escaped.
    """
    badge_cls, badge_text = _status(job)
    times = f"started {_format_time(job.started_at)}"
    end = _last_finish(job, groups)
    if job.finished:
        times += f" · finished {_format_time(end)}"
    elif end:
        times += f" · last group {_format_time(end)}"
    if job.results_location and job.results_location != source:
        times += f" · results manifest {job.results_location}"
    footer = "Generated by fanfetch"
    if generated_at:
        footer += f" at {_format_time(generated_at)}"
    if source:
        footer += f" from {source}"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network: nothing on this page may load from elsewhere.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        f"<title>fanfetch job {_e(job.job_id)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f'<header><h1>fanfetch job report</h1><code class="job-id">{_e(job.job_id)}</code>'
        f'<span class="badge {badge_cls}" id="status">{_e(badge_text)}</span>'
        f'<div class="times">{_e(times)}</div></header>',
        _render_summary(job, groups),
        _render_throughput(job, groups),
        _render_failures(groups),
        f"<footer>{_e(footer)}</footer>",
        "</main></body></html>",
        "",
    ])
