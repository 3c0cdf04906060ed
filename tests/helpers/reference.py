"""The named queries computed again in pandas from docs/analytics-definitions.md, not from the SQL.

Owns the test suite's independent answer to: funnel (ordered and strict), time to convert, task
times and their summary, daily conversion, experiment units and experiment events. Each function
takes every delivered copy of every event (duplicates included) and applies the definitions page
literally; where the page leaves a choice open, the docstring says which one is taken.

Invariant: nothing here is derived from a query's text; a disagreement with the SQL is settled by
the definitions page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from funnelstream.contract import EnrichedEvent, EventType

TASK_TIME_CAP_S = 3600
NONE_VALUE = "(none)"
# Image size buckets (docs: "Image size bucket"): an upload's width x height, 1 MP = 1_000_000 pixels.
MEGAPIXEL = 1_000_000
DAILY_STEPS = ("image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted")


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def size_bucket(width: int | None, height: int | None) -> str | None:
    """small under 1 MP, medium from 1 MP to under 4 MP, large from 4 MP; None without both sides."""
    if width is None or height is None:
        return None
    pixels = width * height
    return "small" if pixels < MEGAPIXEL else "medium" if pixels < 4 * MEGAPIXEL else "large"


def frame(events: Iterable[EnrichedEvent]) -> pd.DataFrame:
    """One row per event_id: the first received copy (smallest received_at, then smallest event_ts)."""
    rows = []
    for event in events:
        rows.append(
            {
                "event_id": str(event.event_id),
                "event_type": str(event.event_type.value),
                "anonymous_id": event.anonymous_id,
                "user_id": event.user_id,
                "session_id": event.session_id,
                "input_id": str(event.input_id) if event.input_id else None,
                "ts": _ms(event.event_ts),
                "received": _ms(event.received_at),
                "tool_name": event.tool_name,
                "inference_type": event.inference_type,
                "source": event.source,
                "browser": event.browser,
                "os": event.os,
                "device": event.device,
                "size": size_bucket(event.width, event.height),
                "experiment_key": event.experiment_key,
                "variant": event.variant,
                "experiments": dict(event.experiments),
                "assignment_source": event.properties.get("assignment_source"),
                "score": event.score,
                "job_id": str(event.job_id) if event.job_id else None,
                "model_version": event.model_version,
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.sort_values(["received", "ts"], kind="stable").drop_duplicates("event_id", keep="first")
    return df.reset_index(drop=True)


# --- funnels ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Path:
    """A unit's conversion path: the earliest entry whose chain reaches the unit's level, each next
    step at its earliest possible event. ``times[i]`` is the time of step i+1; ``rows[i]`` are the
    step's candidate events at that millisecond (several when they tie)."""

    level: int
    times: list[int]
    rows: list[pd.DataFrame]


def _chain(
    events: pd.DataFrame, steps: list[str], entry_ts: int, window_ms: int, before: int | None
) -> tuple[list[int], list[pd.DataFrame]]:
    """Greedy chain from an entry at ``entry_ts``: step k at the earliest event at or after step
    k-1, at most ``window_ms`` after the entry (inclusive). Events at or after position ``before``
    in step order (strict mode's stop) are not seen."""
    times = [entry_ts]
    rows = [events[(events.event_type == steps[0]) & (events.ts == entry_ts)]]
    for step in steps[1:]:
        candidates = events[
            (events.event_type == step) & (events.ts >= times[-1]) & (events.ts <= entry_ts + window_ms)
        ]
        if before is not None:
            candidates = candidates[candidates["seq"] < before]
        if candidates.empty:
            break
        at = int(candidates.ts.min())
        times.append(at)
        rows.append(candidates[candidates.ts == at])
    return times, rows


def _strict_stop(
    events: pd.DataFrame, steps: list[str], exclude: str, start: int, end: int, window_ms: int
) -> int | None:
    """Strict mode: the order position of the first event after the first entry that is of a
    listed type and neither the next step, nor a repeat of a step reached, nor step 1. Step-1
    events never stop the chain, in the range or not (the page calls them "step 1 (a new entry)")."""
    listed = [*steps, *([exclude] if exclude else [])]
    ordered = events[events.event_type.isin(listed)].sort_values("seq")
    level = 0
    first_entry: int | None = None
    for row in ordered.itertuples():
        kind = str(row.event_type)
        if first_entry is None:
            if kind == steps[0] and start <= row.ts < end:
                first_entry = int(row.ts)
                level = 1
            continue
        if kind == steps[0]:
            continue
        if kind not in steps:
            return int(row.seq)
        index = steps.index(kind) + 1
        if index > level + 1:
            return int(row.seq)
        if index == level + 1:
            # Advance when some chain reaches it: the ordered rule on the events seen so far.
            seen = ordered[ordered.seq <= row.seq]
            level = max(level, _level_of(seen, steps, start, end, window_ms, None)[0])
    return None


def _level_of(
    events: pd.DataFrame, steps: list[str], start: int, end: int, window_ms: int, before: int | None
) -> tuple[int, Path | None]:
    entries = events[(events.event_type == steps[0]) & (events.ts >= start) & (events.ts < end)]
    if before is not None:
        entries = entries[entries["seq"] < before]
    best: Path | None = None
    for entry_ts in sorted(set(int(t) for t in entries.ts)):
        times, rows = _chain(events, steps, entry_ts, window_ms, before)
        if best is None or len(times) > best.level:
            best = Path(len(times), times, rows)
        if best.level == len(steps):
            break
    return (0, None) if best is None else (best.level, best)


def _with_order(events: pd.DataFrame, steps: list[str]) -> pd.DataFrame:
    """Events sorted by time, and at the same millisecond by the funnel's step order."""
    rank = {step: index for index, step in enumerate(steps)}
    ordered = events.assign(step_rank=events.event_type.map(lambda kind: rank.get(kind, len(steps))))
    ordered = ordered.sort_values(["ts", "step_rank"], kind="stable").reset_index(drop=True)
    return ordered.assign(seq=range(len(ordered)))


def unit_paths(
    df: pd.DataFrame,
    steps: list[str],
    start: datetime,
    end: datetime,
    window_s: int,
    unit: str,
    exclude: str = "",
    strict: bool = False,
    entries_from: dict[str, int] | None = None,
) -> dict[str, Path]:
    """Every unit with level >= 1 and its conversion path.

    ``entries_from`` (the variant breakdown): only these units, and only their entries at or after
    the given time (the device's first exposure) are entries."""
    if df.empty:
        return {}
    start_ms, end_ms, window_ms = _ms(start), _ms(end), window_s * 1000
    df = df[df[unit].notna()]
    paths: dict[str, Path] = {}
    for key, group in df.groupby(unit, sort=True):
        if exclude:
            excluded = group[(group.event_type == exclude) & (group.ts >= start_ms) & (group.ts < end_ms + window_ms)]
            if not excluded.empty:
                continue
        first_ok = start_ms
        if entries_from is not None:
            if str(key) not in entries_from:
                continue
            first_ok = max(start_ms, entries_from[str(key)])
        events = _with_order(group, steps)
        before = _strict_stop(events, steps, exclude, first_ok, end_ms, window_ms) if strict else None
        _, path = _level_of(events, steps, first_ok, end_ms, window_ms, before)
        if path is not None:
            paths[str(key)] = path
    return paths


def _smallest(values: Iterable[Any]) -> str:
    present = sorted(str(value) for value in values if not pd.isna(value) and str(value) != "")
    return present[0] if present else NONE_VALUE


def breakdown_value(
    path: Path,
    unit_events: pd.DataFrame,
    steps: list[str],
    breakdown: str,
    window_s: int,
) -> str:
    """The value a unit's conversion path gives a breakdown (docs: "Breakdown value")."""
    if breakdown == "none":
        return "all"
    entry = path.rows[0]
    if breakdown == "day":
        return str(pd.Timestamp(path.times[0], unit="ms", tz="UTC").date())
    if breakdown in ("source", "browser", "os", "device"):
        return _smallest(entry[breakdown])
    column, kind = {
        "tool": ("tool_name", "tool_selected"),
        "inference_type": ("inference_type", "inference_requested"),
        "size": ("size", "image_uploaded"),
    }[breakdown]
    if kind in steps:
        index = steps.index(kind)
        # Not reached: the path has no such event, so no value.
        return _smallest(path.rows[index][column]) if index < path.level else NONE_VALUE
    t1 = path.times[0]
    later = unit_events[
        (unit_events.event_type == kind) & (unit_events.ts >= t1) & (unit_events.ts <= t1 + window_s * 1000)
    ]
    if later.empty:
        return NONE_VALUE
    return _smallest(later[later.ts == later.ts.min()][column])


def _device_of(df: pd.DataFrame, unit: str) -> dict[str, str]:
    """For image and session units, the device they belong to (the generator keeps one each)."""
    pairs = df[df[unit].notna()][[unit, "anonymous_id"]].drop_duplicates()
    return {str(row[0]): str(row[1]) for row in pairs.itertuples(index=False)}


def filtered(
    df: pd.DataFrame, filters: Mapping[str, str], experiment: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """The events a funnel's filters keep (docs: "Funnel filters"): an event that carries the
    dimension (not None) must have the chosen value, an event without it passes; a variant keeps
    only the events of devices that are clean units of the experiment in that arm, from their
    first exposure on (units of the unfiltered events)."""
    keep = pd.Series(True, index=df.index)
    for dimension in ("tool", "inference_type", "source", "browser", "os", "device", "size"):
        chosen = filters.get(dimension, "")
        if chosen:
            column = df["tool_name" if dimension == "tool" else dimension]
            keep &= column.isna() | (column == chosen)
    if filters.get("variant", ""):
        units = experiment_units_frame(df, experiment, start, end)
        arm = units.loc[~units.contaminated.astype(bool) & (units.variant == filters["variant"])]
        first = dict(zip(arm.anonymous_id, arm.first_exposure_ms, strict=True))
        keep &= pd.Series(
            [device in first and ts >= first[device] for device, ts in zip(df.anonymous_id, df.ts, strict=True)],
            index=df.index,
        )
    return df[keep].reset_index(drop=True)


def funnel_units(
    events: Iterable[EnrichedEvent],
    steps: list[str],
    start: datetime,
    end: datetime,
    window_s: int,
    unit: str,
    breakdown: str = "none",
    exclude: str = "",
    experiment: str = "",
    strict: bool = False,
    filters: Mapping[str, str] | None = None,
) -> dict[str, tuple[str, Path]]:
    """unit -> (breakdown value, conversion path) for every unit the funnel counts. ``filters``:
    dimension (tool, inference_type, variant, source, browser, os, device, size) -> value, '' = any."""
    df = frame(events)
    if df.empty:
        return {}
    every = df
    df = filtered(df, filters or {}, experiment, start, end)
    if df.empty:
        return {}
    entries_from: dict[str, int] | None = None
    arm_of_unit: dict[str, str] = {}
    if breakdown == "variant":
        units = experiment_units_frame(every, experiment, start, end)
        clean = units.loc[~units.contaminated.astype(bool)]
        arm = dict(zip(clean.anonymous_id, clean.variant, strict=True))
        first = dict(zip(clean.anonymous_id, clean.first_exposure_ms, strict=True))
        owner = {str(d): str(d) for d in df.anonymous_id} if unit == "anonymous_id" else _device_of(df, unit)
        entries_from = {u: first[d] for u, d in owner.items() if d in first}
        arm_of_unit = {u: arm[d] for u, d in owner.items() if d in arm}
    paths = unit_paths(df, steps, start, end, window_s, unit, exclude, strict, entries_from)
    out: dict[str, tuple[str, Path]] = {}
    for key, path in paths.items():
        if breakdown == "variant":
            value = arm_of_unit[key]
        else:
            value = breakdown_value(path, df[df[unit] == key], steps, breakdown, window_s)
        out[key] = (value, path)
    return out


def funnel(
    events: Iterable[EnrichedEvent],
    steps: list[str],
    start: datetime,
    end: datetime,
    window_s: int,
    unit: str,
    breakdown: str = "none",
    exclude: str = "",
    experiment: str = "",
    strict: bool = False,
    filters: Mapping[str, str] | None = None,
) -> dict[tuple[str, int], int]:
    """(breakdown value, step) -> units with level >= step. Every step of a breakdown value that
    has an entered unit is present, zero included."""
    units = funnel_units(events, steps, start, end, window_s, unit, breakdown, exclude, experiment, strict, filters)
    result: dict[tuple[str, int], int] = {}
    for value, path in units.values():
        for step in range(1, len(steps) + 1):
            result[(value, step)] = result.get((value, step), 0) + int(path.level >= step)
    return result


# --- quantiles and time to convert --------------------------------------------------------------


def quantile_low(values: Iterable[float], q: float) -> float:
    """The lower (inverted-CDF) quantile: the smallest value with at least a share q of the values
    at or below it. Exact arithmetic, so 0.9 * 70 is 63, not 63.00000000000001."""
    ordered = sorted(values)
    position = math.ceil(Fraction(str(q)) * len(ordered))
    return ordered[max(position, 1) - 1]


def time_to_convert(
    events: Iterable[EnrichedEvent],
    steps: list[str],
    start: datetime,
    end: datetime,
    window_s: int,
    unit: str = "input_id",
    exclude: str = "",
    breakdown: str = "none",
    experiment: str = "",
    filters: Mapping[str, str] | None = None,
) -> dict[tuple[str, int], dict[str, list[float]]]:
    """(breakdown value, step k >= 2) -> {"from_previous": t_k - t_{k-1}, "from_entry": t_k - t_1}
    in seconds, one value per unit with level >= k, along its conversion path: the units and
    breakdown values the funnel counts."""
    units = funnel_units(events, steps, start, end, window_s, unit, breakdown, exclude, experiment, filters=filters)
    out: dict[tuple[str, int], dict[str, list[float]]] = {}
    for value, path in units.values():
        for k in range(2, path.level + 1):
            values = out.setdefault((value, k), {"from_previous": [], "from_entry": []})
            values["from_previous"].append((path.times[k - 1] - path.times[k - 2]) / 1000)
            values["from_entry"].append((path.times[k - 1] - path.times[0]) / 1000)
    return out


# --- task time ----------------------------------------------------------------------------------


def task_times(events: Iterable[EnrichedEvent], start: datetime, end: datetime) -> pd.DataFrame:
    """Per image whose first tool click (any time) is in [start, end): seconds from that click to
    the first inference at or after it, from that inference to the first save at or after it, and
    in all (``diff_second``). A task longer than TASK_TIME_CAP_S counts as an image without a saved
    result: its save and total are null; the inference, which the cap does not concern, is kept."""
    df = frame(events)
    columns = ["input_id", "first_tool_ms", "tool_to_inference_s", "inference_to_save_s", "diff_second"]
    if df.empty:
        return pd.DataFrame(columns=columns).set_index("input_id")
    df = df[df.input_id.notna()]
    rows = []
    for input_id, group in df.groupby("input_id", sort=True):
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
        if saved is not None and saved - tool > TASK_TIME_CAP_S * 1000:
            saved = None
        rows.append(
            {
                "input_id": input_id,
                "first_tool_ms": tool,
                "tool_to_inference_s": None if inference is None else (inference - tool) / 1000,
                "inference_to_save_s": None if saved is None or inference is None else (saved - inference) / 1000,
                "diff_second": None if saved is None else (saved - tool) / 1000,
            }
        )
    return pd.DataFrame(rows, columns=columns).set_index("input_id").sort_index()


def task_time_groups(
    events: Iterable[EnrichedEvent], start: datetime, end: datetime, breakdown: str = "none", experiment: str = ""
) -> dict[str, list[float | None]]:
    """breakdown value -> every image's task seconds (None: no saved result). ``variant``: the arm
    of the image's device in experiment_units(experiment, start, end), contaminated devices and
    images whose first tool click is before the device's first exposure left out. ``tool``: the
    tool of the image's first tool click (the smallest name on a tie). ``day``: the UTC day of the
    first tool click."""
    df = frame(events)
    times = task_times(events, start, end)
    groups: dict[str, list[float | None]] = {}
    if times.empty:
        return groups
    owner = _device_of(df, "input_id")
    arm: dict[str, str] = {}
    first: dict[str, int] = {}
    if breakdown == "variant":
        units = experiment_units_frame(df, experiment, start, end)
        clean = units.loc[~units.contaminated.astype(bool)]
        arm = dict(zip(clean.anonymous_id, clean.variant, strict=True))
        first = dict(zip(clean.anonymous_id, clean.first_exposure_ms, strict=True))
    clicks = df[(df.event_type == "tool_selected") & df.input_id.notna()]
    first_clicks = clicks[clicks.ts == clicks.groupby("input_id").ts.transform("min")]
    tool_of_first_click = {str(i): _smallest(g.tool_name) for i, g in first_clicks.groupby("input_id")}
    for input_id, row in times.iterrows():
        if breakdown == "variant":
            device = owner[str(input_id)]
            if device not in arm or row.first_tool_ms < first[device]:
                continue
            value = arm[device]
        elif breakdown == "tool":
            value = tool_of_first_click[str(input_id)]
        elif breakdown == "day":
            value = str(pd.Timestamp(int(row.first_tool_ms), unit="ms", tz="UTC").date())
        else:
            value = "all"
        seconds = None if pd.isna(row.diff_second) else float(row.diff_second)
        groups.setdefault(value, []).append(seconds)
    return groups


# --- daily conversion ---------------------------------------------------------------------------


def daily_conversion(events: Iterable[EnrichedEvent], start: datetime, end: datetime, window_s: int) -> pd.DataFrame:
    """Per UTC day: the image funnel upload → tool → inference → save → score, each image counted
    once, on the day of its conversion path's entry."""
    counts = funnel(events, list(DAILY_STEPS), start, end, window_s, "input_id", "day")
    days = sorted({day for day, _ in counts})
    names = ["uploaded", "tool", "inference", "saved", "scored"]
    rows = [{"day": date.fromisoformat(day), **{n: counts[(day, i + 1)] for i, n in enumerate(names)}} for day in days]
    return pd.DataFrame(rows, columns=["day", *names]).set_index("day")


# --- experiment units ---------------------------------------------------------------------------


def experiment_units_frame(df: pd.DataFrame, experiment: str, start: datetime, end: datetime) -> pd.DataFrame:
    """One row per device in the experiment: anonymous_id, variant (its exposures' variant; the
    smallest when there are two, as it is contaminated anyway), first_exposure_ms, contaminated.

    Contaminated: two variants in its exposures; an event in [first exposure, end) whose
    experiments map names another variant (the page says "at or after its first exposure"; events
    after the range are not read, as for the user_id rule); or a user_id on its events in
    [start, end) also on a device whose exposures name another variant."""
    columns = ["anonymous_id", "variant", "first_exposure_ms", "contaminated"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    start_ms, end_ms = _ms(start), _ms(end)
    exposures = df[
        (df.event_type == str(EventType.EXPERIMENT_EXPOSURE))
        & (df.experiment_key == experiment)
        & (df.ts >= start_ms)
        & (df.ts < end_ms)
        & (df.assignment_source != "forced")
    ]
    arms: dict[str, set[str]] = {}
    first: dict[str, int] = {}
    for device, group in exposures.groupby("anonymous_id"):
        arms[str(device)] = {str(v) for v in group.variant}
        first[str(device)] = int(group.ts.min())
    contaminated = {device for device, seen in arms.items() if len(seen) > 1}
    for device in arms:
        later = df[(df.anonymous_id == device) & (df.ts >= first[device]) & (df.ts < end_ms)]
        named = {e[experiment] for e in later.experiments if experiment in e}
        if named - arms[device]:
            contaminated.add(device)
    in_range = df[(df.ts >= start_ms) & (df.ts < end_ms) & df.user_id.notna() & df.anonymous_id.isin(list(arms))]
    for _, group in in_range.groupby("user_id"):
        devices = {str(d) for d in group.anonymous_id}
        seen = set().union(*(arms[d] for d in devices))
        if len(seen) > 1:
            contaminated |= devices
    rows = [
        {"anonymous_id": d, "variant": min(arms[d]), "first_exposure_ms": first[d], "contaminated": d in contaminated}
        for d in sorted(arms)
    ]
    return pd.DataFrame(rows, columns=columns)


def experiment_units(events: Iterable[EnrichedEvent], experiment: str, start: datetime, end: datetime) -> pd.DataFrame:
    return experiment_units_frame(frame(events), experiment, start, end)


def experiment_events(
    events: Iterable[EnrichedEvent], experiment: str, start: datetime, end: datetime, kinds: Iterable[str]
) -> list[tuple[str, str, str, int, str | None, int | None]]:
    """The events of the given types that count for the experiment: a clean device's, at or after
    its first exposure and before ``end``, as (device, arm, type, ms, input_id, score), sorted."""
    df = frame(events)
    if df.empty:
        return []
    units = experiment_units_frame(df, experiment, start, end)
    clean = units.loc[~units.contaminated.astype(bool)]
    arm = dict(zip(clean.anonymous_id, clean.variant, strict=True))
    first = dict(zip(clean.anonymous_id, clean.first_exposure_ms, strict=True))
    wanted = set(kinds)
    return sorted(
        (
            str(row.anonymous_id),
            arm[row.anonymous_id],
            str(row.event_type),
            int(row.ts),
            None if row.input_id is None or pd.isna(row.input_id) else str(row.input_id),
            None if pd.isna(row.score) else int(row.score),
        )
        for row in df.itertuples()
        if row.anonymous_id in first and first[row.anonymous_id] <= row.ts < _ms(end) and row.event_type in wanted
    )


# --- scores -------------------------------------------------------------------------------------


def scores_by_model(events: Iterable[EnrichedEvent], start: datetime, end: datetime) -> dict[tuple[str, str], float]:
    df = frame(events)
    scores = df[(df.ts >= _ms(start)) & (df.ts < _ms(end)) & (df.event_type == "score_submitted")]
    completed = df[df.event_type == "inference_completed"].sort_values("ts").groupby("job_id").last()
    joined = scores.join(completed[["inference_type", "model_version"]], on="job_id", rsuffix="_job")
    grouped = joined.groupby(["inference_type_job", "model_version_job"]).score.mean()
    return {key: float(np.round(value, 4)) for key, value in grouped.items()}
