"""Pandas references of the workspace's task-time queries, written from docs/analytics-definitions.md
("Task time", "Quantiles") on top of the task-time reference in tests/helpers/reference.py.

Owns the per-image groups (first tool, experiment arm) and what the histogram, daily trend and
slowest-images queries compute from them. Invariant: task time itself is reference.task_times'.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from funnelstream.contract import EnrichedEvent
from tests.helpers import reference


def task_time_images(
    events: Iterable[EnrichedEvent], start: datetime, end: datetime, experiment: str = ""
) -> pd.DataFrame:
    """Per image whose first tool click is in [start, end): ``first_tool_ms``, ``diff_second`` (None:
    no counted task time), ``tool`` (of the first tool click, the smallest name on a tie) and
    ``variant`` (the arm of its device when a clean unit of ``experiment`` first exposed at or
    before the click, else '')."""
    events = list(events)
    df = reference.frame(events)
    times = reference.task_times(events, start, end)
    columns = ["input_id", "anonymous_id", "first_tool_ms", "diff_second", "tool", "variant"]
    if times.empty:
        return pd.DataFrame(columns=columns)
    owner = reference._device_of(df, "input_id")
    units = reference.experiment_units_frame(df, experiment, start, end) if experiment else None
    arm: dict[str, str] = {}
    exposed: dict[str, int] = {}
    if units is not None and not units.empty:
        clean = units.loc[~units.contaminated.astype(bool)]
        arm = dict(zip(clean.anonymous_id, clean.variant, strict=True))
        exposed = dict(zip(clean.anonymous_id, clean.first_exposure_ms, strict=True))
    clicks = df[(df.event_type == "tool_selected") & df.input_id.notna()]
    first_clicks = clicks[clicks.ts == clicks.groupby("input_id").ts.transform("min")]
    tool_of = {str(i): reference._smallest(g.tool_name) for i, g in first_clicks.groupby("input_id")}
    rows = []
    for input_id, row in times.iterrows():
        device = owner[str(input_id)]
        in_arm = device in arm and row.first_tool_ms >= exposed[device]
        rows.append(
            {
                "input_id": str(input_id),
                "anonymous_id": device,
                "first_tool_ms": int(row.first_tool_ms),
                "diff_second": None if pd.isna(row.diff_second) else float(row.diff_second),
                "tool": tool_of[str(input_id)],
                "variant": arm[device] if in_arm else "",
            }
        )
    return pd.DataFrame(rows, columns=columns)


def log2_bin(seconds: float) -> int:
    """Bin 0 is [0, 1) s, bin b >= 1 is [2^(b-1), 2^b) s: the bit length of the whole seconds."""
    return int(seconds // 1).bit_length()


def _group(images: pd.DataFrame, dimension: str) -> pd.DataFrame:
    if dimension == "variant":
        images = images[images.variant != ""]
    key = images.variant if dimension == "variant" else images.tool if dimension == "tool" else "all"
    return images.assign(group=key)


def histogram(images: pd.DataFrame, dimension: str) -> dict[tuple[str, int], int]:
    """(group, bin) -> saved images, for dimension 'tool' or 'variant'."""
    saved = _group(images, dimension).dropna(subset=["diff_second"])
    counts: dict[tuple[str, int], int] = {}
    for group, seconds in zip(saved.group, saved.diff_second, strict=True):
        key = (str(group), log2_bin(float(seconds)))
        counts[key] = counts.get(key, 0) + 1
    return counts


def daily(images: pd.DataFrame, dimension: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(UTC day, group) -> images, saved_images, mean_s, p50_s, p90_s (lower quantiles, 3 decimals)."""
    grouped = _group(images, dimension)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (day, group), part in grouped.groupby(
        [pd.to_datetime(grouped.first_tool_ms, unit="ms", utc=True).dt.date.astype(str), "group"]
    ):
        saved = [float(s) for s in part.diff_second if s is not None and not pd.isna(s)]
        out[(str(day), str(group))] = {
            "images": len(part),
            "saved_images": len(saved),
            "mean_s": round(sum(saved) / len(saved), 3) if saved else None,
            "p50_s": round(reference.quantile_low(saved, 0.5), 3) if saved else None,
            "p90_s": round(reference.quantile_low(saved, 0.9), 3) if saved else None,
        }
    return out


def slowest(images: pd.DataFrame, limit: int, tool: str = "", variant: str = "") -> list[tuple[str, float]]:
    """(input_id, seconds) of the saved images, longest first (input_id on a tie), at most ``limit``."""
    saved = images.dropna(subset=["diff_second"])
    if tool:
        saved = saved[saved.tool == tool]
    if variant:
        saved = saved[saved.variant == variant]
    ordered = sorted(zip(saved.input_id, saved.diff_second, strict=True), key=lambda pair: (-pair[1], pair[0]))
    return [(str(input_id), float(seconds)) for input_id, seconds in ordered[:limit]]


def timeline(events: Iterable[EnrichedEvent], input_id: str) -> list[tuple[int, str]]:
    """(event time in ms, event type) of the image's events, by time then type."""
    df = reference.frame(events)
    if df.empty:
        return []
    mine = df[df.input_id == input_id]
    return sorted(zip(mine.ts.astype(int), mine.event_type, strict=True), key=lambda pair: (pair[0], pair[1]))
