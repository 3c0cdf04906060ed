"""Independent pandas computations of what the named queries answer, for the tests."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from funnelstream.contract import EnrichedEvent


def frame(events: list[EnrichedEvent]) -> pd.DataFrame:
    rows = []
    for event in events:
        rows.append(
            {
                "event_id": str(event.event_id),
                "event_type": str(event.event_type.value),
                "anonymous_id": event.anonymous_id,
                "session_id": event.session_id,
                "input_id": str(event.input_id) if event.input_id else None,
                "ts": int(event.event_ts.timestamp() * 1000),
                "tool_name": event.tool_name,
                "inference_type": event.inference_type,
                "variant": event.experiments.get("segmentation_tool"),
                "source": event.source,
                "score": event.score,
                "job_id": str(event.job_id) if event.job_id else None,
                "model_version": event.model_version,
            }
        )
    return pd.DataFrame(rows).drop_duplicates("event_id")


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _in_range(df: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return df[(df.ts >= _ms(start)) & (df.ts < _ms(end))]


def _level(group: pd.DataFrame, steps: list[str], window_ms: int) -> int:
    """windowFunnel, default mode: the longest ordered chain within the window of its first step."""
    times = {step: sorted(group.ts[group.event_type == step]) for step in steps}
    best = 0
    for first in times[steps[0]]:
        level, previous = 1, first
        for step in steps[1:]:
            later = [t for t in times[step] if previous < t <= first + window_ms]
            if not later:
                break
            previous = later[0]
            level += 1
        best = max(best, level)
        if best == len(steps):
            break
    return best


def _breakdown(group: pd.DataFrame, breakdown: str) -> str:
    ordered = group.sort_values("ts")
    if breakdown == "variant":
        values = ordered.variant.dropna()
        return str(values.iloc[0]) if len(values) else "(none)"
    if breakdown == "tool":
        values = ordered.tool_name[ordered.event_type == "tool_selected"].dropna()
        return str(values.iloc[0]) if len(values) else "(none)"
    if breakdown == "inference_type":
        inferences = ordered.event_type.isin(["inference_requested", "inference_completed"])
        values = ordered.inference_type[inferences].dropna()
        return str(values.iloc[0]) if len(values) else "(none)"
    if breakdown == "source":
        return str(ordered.source.iloc[0]) or "(none)"
    if breakdown == "day":
        return str(pd.to_datetime(int(ordered.ts.iloc[0]), unit="ms", utc=True).date())
    return "all"


def funnel(
    events: list[EnrichedEvent],
    steps: list[str],
    start: datetime,
    end: datetime,
    window_s: int,
    unit: str,
    breakdown: str,
    exclude: str = "",
) -> dict[tuple[str, int], int]:
    df = _in_range(frame(events), start, end)
    df = df[df.event_type.isin([*steps, exclude])]
    if unit == "input_id":
        df = df[df.input_id.notna()]
    result: dict[tuple[str, int], int] = {}
    for _, group in df.groupby(unit):
        if exclude and (group.event_type == exclude).any():
            continue
        level = _level(group, steps, window_s * 1000)
        if level == 0:
            continue
        key = _breakdown(group, breakdown)
        for step in range(1, len(steps) + 1):
            result[(key, step)] = result.get((key, step), 0) + int(level >= step)
    return result


def quantile_exact(values: list[float], level: float) -> float:
    """ClickHouse's quantileExact: the element at floor(n * level) of the sorted values."""
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * level), len(ordered) - 1)]


def time_to_convert(
    events: list[EnrichedEvent], steps: list[str], start: datetime, end: datetime, window_s: int
) -> dict[int, list[float]]:
    df = _in_range(frame(events), start, end)
    df = df[df.event_type.isin(steps) & df.input_id.notna()]
    window = window_s * 1000
    seconds: dict[int, list[float]] = {}
    for _, group in df.groupby("input_id"):
        firsts = group.ts[group.event_type == steps[0]]
        if firsts.empty:
            continue
        first = previous = int(firsts.min())
        for index, step in enumerate(steps[1:], start=2):
            later = group.ts[(group.event_type == step) & (group.ts >= previous) & (group.ts - first <= window)]
            if later.empty:
                break
            current = int(later.min())
            seconds.setdefault(index, []).append((current - previous) / 1000)
            previous = current
    return seconds


def task_times(events: list[EnrichedEvent], start: datetime, end: datetime) -> pd.DataFrame:
    df = frame(events)
    df = df[df.input_id.notna()]
    rows = []
    for input_id, group in df.groupby("input_id"):
        tools = group.ts[group.event_type == "tool_selected"]
        if tools.empty:
            continue
        tool = int(tools.min())
        if not _ms(start) <= tool < _ms(end):
            continue
        inferences = group.ts[(group.event_type == "inference_requested") & (group.ts >= tool)]
        inference = int(inferences.min()) if not inferences.empty else None
        saved = None
        if inference is not None:
            saves = group.ts[(group.event_type == "image_saved") & (group.ts >= inference)]
            saved = int(saves.min()) if not saves.empty else None
        rows.append(
            {
                "input_id": input_id,
                "tool_to_inference_s": None if inference is None else (inference - tool) / 1000,
                "inference_to_save_s": None if saved is None or inference is None else (saved - inference) / 1000,
                "diff_second": None if saved is None else (saved - tool) / 1000,
            }
        )
    return pd.DataFrame(rows).set_index("input_id").sort_index()


def daily_conversion(events: list[EnrichedEvent], start: datetime, end: datetime, window_s: int) -> pd.DataFrame:
    steps = ["image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted"]
    df = _in_range(frame(events), start, end)
    df = df[df.input_id.notna() & df.event_type.isin(steps)]
    rows = []
    for _, group in df.groupby("input_id"):
        level = _level(group, steps, window_s * 1000)
        if level == 0:
            continue
        first_upload = int(group.ts[group.event_type == "image_uploaded"].min())
        day = pd.Timestamp(first_upload, unit="ms", tz="UTC").date()
        rows.append({"day": day, "level": level})
    levels = pd.DataFrame(rows)
    out = levels.groupby("day").agg(
        uploaded=("level", "size"),
        tool=("level", lambda s: int((s >= 2).sum())),
        inference=("level", lambda s: int((s >= 3).sum())),
        saved=("level", lambda s: int((s >= 4).sum())),
        scored=("level", lambda s: int((s >= 5).sum())),
    )
    return out.sort_index()


def scores_by_model(events: list[EnrichedEvent], start: datetime, end: datetime) -> dict[tuple[str, str], float]:
    df = frame(events)
    scores = _in_range(df, start, end)
    scores = scores[scores.event_type == "score_submitted"]
    completed = df[df.event_type == "inference_completed"].sort_values("ts").groupby("job_id").last()
    joined = scores.join(completed[["inference_type", "model_version"]], on="job_id", rsuffix="_job")
    grouped = joined.groupby(["inference_type_job", "model_version_job"]).score.mean()
    return {key: float(np.round(value, 4)) for key, value in grouped.items()}
