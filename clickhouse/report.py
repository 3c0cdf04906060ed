"""The HTML funnel report: one self-contained page that works offline, its Plotly charts drawn by
the library embedded once, inline (the workspace's charts, so both draw a funnel alike).

A funnel range, or a day of the trend, whose ``to + window`` is not past yet is marked incomplete
(docs/analytics-definitions.md, "Complete or not"): late steps may still come.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from clickhouse.queries import FunnelRequest
from clickhouse.workspace import charts
from clickhouse.workspace.answers import Figure


def _timing_chart(timing_rows: list[dict[str, Any]]) -> Figure:
    """P50 and P90 seconds from the previous step, a bar per step per breakdown value and percentile."""
    labels = list(dict.fromkeys(f"{row['step']}. {row['step_name']}" for row in timing_rows))
    series: dict[str, list[Any]] = {}
    for row in timing_rows:
        label = labels.index(f"{row['step']}. {row['step_name']}")
        for key in ("p50_s", "p90_s"):
            values = series.setdefault(f"{row['breakdown']} {key[:3].upper()}", [None] * len(labels))
            values[label] = row[key]
    return charts.bar(labels, series, title="P50 and P90 seconds by step", value_title="seconds from the previous step")


def _trend_chart(trend_rows: list[dict[str, Any]]) -> Figure:
    """Upload to save by day of upload; days whose saves may still come are dashed and shaded."""
    days = [charts.moment(row["day"]) for row in trend_rows]
    complete = [bool(row.get("complete", True)) for row in trend_rows]
    traces = charts.incomplete_lines("upload → save", days, [row["upload_to_save"] for row in trend_rows], complete)
    chart_layout = charts.layout(
        "Upload to save, by day of upload", y_title="conversion", y_percent=True, x_type="date"
    )
    charts.day_ticks(chart_layout, [row["day"] for row in trend_rows])
    chart_layout["shapes"] = charts.incomplete_shade([row["day"] for row in trend_rows], complete)
    return charts.figure(traces, chart_layout)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No rows.</p>"
    head = "".join(f"<th>{html.escape(str(key))}</th>" for key in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def completeness_note(request: FunnelRequest, now: datetime | None = None) -> str:
    """'' when the range is final; otherwise what is missing and until when."""
    if request.complete(now):
        return ""
    return (
        f"incomplete: steps of entries up to {request.end:%Y-%m-%d %H:%M} UTC may still come until "
        f"{request.complete_at:%Y-%m-%d %H:%M} UTC (to + window)"
    )


def _completeness_note(request: FunnelRequest) -> str:
    note = completeness_note(request)
    return f'<p class="incomplete"><strong>{html.escape(note.capitalize())}.</strong></p>' if note else ""


def _day_label(row: dict[str, Any]) -> str:
    return str(row["day"]) if row.get("complete", True) else f"{row['day']} (incomplete)"


def funnel_page(
    request: FunnelRequest,
    funnel_rows: list[dict[str, Any]],
    timing_rows: list[dict[str, Any]],
    trend_rows: list[dict[str, Any]],
    task_time_rows: list[dict[str, Any]] | None = None,
) -> str:
    title = (
        f"Funnel {request.start:%Y-%m-%d %H:%M} – {request.end:%Y-%m-%d %H:%M} UTC · unit {request.unit} · "
        f"breakdown {request.breakdown} · window {request.window_s}s · {request.mode}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:right}}th{{background:#f3f3f3}}
.chart{{max-width:900px;min-height:360px}}</style>
{charts.plotly_script()}
</head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC. Conversion is from the first step.</p>
{_completeness_note(request)}
{charts.embed(charts.funnel_steps(funnel_rows), "funnel-conversion")}
{_table(funnel_rows)}
<h2>Time to convert (seconds from the previous step)</h2>
{charts.embed(_timing_chart(timing_rows), "funnel-timing") if timing_rows else ""}
{_table(timing_rows)}
<h2>Task time per image (first tool click to the save of an inferred result, seconds)</h2>
{_table(task_time_rows or [])}
<h2>Daily trend</h2>
{charts.embed(_trend_chart(trend_rows), "funnel-trend") if trend_rows else ""}
{_table(trend_rows)}
</body></html>
"""
