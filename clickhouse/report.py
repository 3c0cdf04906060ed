"""The HTML funnel report: one self-contained page, charts drawn as inline SVG.

A funnel range, or a day of the trend, whose ``to + window`` is not past yet is marked incomplete
(docs/analytics-definitions.md, "Complete or not"): late steps may still come.
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from clickhouse.queries import FunnelRequest

_COLORS = ("#2f6fdf", "#e0803a", "#3aa676", "#b04fc4", "#c9a227", "#6b7a8f")


def _bars(series: dict[str, list[tuple[str, float]]], *, percent: bool, title: str) -> str:
    """Grouped horizontal bars: one group per label, one bar per series."""
    labels: list[str] = []
    for points in series.values():
        for label, _ in points:
            if label not in labels:
                labels.append(label)
    peak = max((value for points in series.values() for _, value in points), default=0) or 1
    bar_h, gap, left, width = 14, 10, 190, 460
    group_h = bar_h * max(len(series), 1) + gap
    height = 40 + group_h * len(labels) + 20 * len(series)
    parts = [f'<svg width="{left + width + 120}" height="{height}" role="img" aria-label="{html.escape(title)}">']
    parts.append(f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>')
    for index, label in enumerate(labels):
        y0 = 30 + index * group_h
        parts.append(f'<text x="0" y="{y0 + bar_h}" font-size="12">{html.escape(label)}</text>')
        for s_index, points in enumerate(series.values()):
            value = dict(points).get(label)
            if value is None:
                continue
            y = y0 + s_index * bar_h
            w = max(1.0, width * value / peak)
            text = f"{value:.1%}" if percent else f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
            color = _COLORS[s_index % len(_COLORS)]
            parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{color}"/>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 3}" font-size="11">{text}</text>')
    legend_y = 30 + group_h * len(labels) + 4
    for s_index, name in enumerate(series):
        y = legend_y + s_index * 18
        color = _COLORS[s_index % len(_COLORS)]
        parts.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{left + 18}" y="{y + 11}" font-size="12">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


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
    conversion: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for row in funnel_rows:
        conversion[str(row["breakdown"])].append((f"{row['step']}. {row['step_name']}", float(row["conversion"])))
    timing: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for row in timing_rows:
        timing[f"{row['breakdown']} P50"].append((f"{row['step']}. {row['step_name']}", float(row["p50_s"] or 0)))
        timing[f"{row['breakdown']} P90"].append((f"{row['step']}. {row['step_name']}", float(row["p90_s"] or 0)))
    trend = {"upload → save": [(_day_label(row), float(row["upload_to_save"])) for row in trend_rows]}
    title = (
        f"Funnel {request.start:%Y-%m-%d %H:%M} – {request.end:%Y-%m-%d %H:%M} UTC · unit {request.unit} · "
        f"breakdown {request.breakdown} · window {request.window_s}s · {request.mode}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:right}}th{{background:#f3f3f3}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC. Conversion is from the first step.</p>
{_completeness_note(request)}
{_bars(dict(conversion), percent=True, title="Conversion by step")}
{_table(funnel_rows)}
<h2>Time to convert (seconds from the previous step)</h2>
{_bars(dict(timing), percent=False, title="P50 and P90 seconds by step") if timing_rows else ""}
{_table(timing_rows)}
<h2>Task time per image (first tool click to the save of an inferred result, seconds)</h2>
{_table(task_time_rows or [])}
<h2>Daily trend</h2>
{_bars(trend, percent=True, title="Upload to save, by day of upload") if trend_rows else ""}
{_table(trend_rows)}
</body></html>
"""
