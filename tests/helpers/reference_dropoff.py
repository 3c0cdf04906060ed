"""The drop-off analytics computed again in pandas from their definitions, not from the SQL.

Owns the test suite's independent answer to conversion over time, the time-to-convert histogram,
the units that dropped at a step, paths after drop-off and the drop-off correlation counts. The
funnel's units and conversion paths come from tests/helpers/reference.py (itself written from the
definitions page); everything after them is recomputed here, literally.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pandas as pd

from clickhouse.queries import FunnelMode, FunnelRequest
from funnelstream.contract import EnrichedEvent
from tests.helpers import reference

SKIPPED_TYPES = ("pipeline_heartbeat",)
DIMENSIONS = ("tool", "inference_type", "source", "browser", "os", "device", "size")


def units(events: Iterable[EnrichedEvent], request: FunnelRequest) -> dict[str, tuple[str, reference.Path]]:
    """unit id -> (breakdown value, conversion path): the funnel's units."""
    return reference.funnel_units(
        list(events),
        list(request.steps),
        request.start,
        request.end,
        request.window_s,
        str(request.unit),
        str(request.breakdown),
        request.exclude,
        request.experiment,
        strict=request.mode is FunnelMode.STRICT,
        filters={name: getattr(request.filters, name) for name in (*DIMENSIONS, "variant")},
    )


def _bucket(ms: int, interval: str) -> datetime:
    at = datetime.fromtimestamp(ms // 1000, UTC)
    return at.replace(minute=0, second=0) if interval == "hour" else at.replace(hour=0, minute=0, second=0)


def over_time(
    events: Iterable[EnrichedEvent], request: FunnelRequest, interval: str, now: datetime
) -> dict[tuple[datetime, int], tuple[int, float, bool]]:
    """(bucket start, step) -> (units with level >= step, units / the bucket's entries, complete):
    buckets of the entry time; complete once min(bucket end, to) + window <= now."""
    reached: dict[datetime, Counter[int]] = {}
    for _, path in units(events, request).values():
        counts = reached.setdefault(_bucket(path.times[0], interval), Counter())
        for step in range(1, path.level + 1):
            counts[step] += 1
    out = {}
    length = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
    for bucket, counts in reached.items():
        complete = min(bucket + length, request.end) + timedelta(seconds=request.window_s) <= now
        for step in range(1, len(request.steps) + 1):
            out[(bucket, step)] = (counts[step], counts[step] / counts[1], complete)
    return out


def time_bin(seconds: float) -> int:
    """0 for [0, 1) s, b for [2^(b-1), 2^b) s."""
    return int(seconds).bit_length()


def ttc_histogram(
    events: Iterable[EnrichedEvent], request: FunnelRequest
) -> tuple[dict[tuple[int, int], int], dict[int, tuple[float, float]]]:
    """((step, bin) -> units, step -> (P50, P90)) of t_k - t_{k-1} in seconds, k >= 2, all units
    together, lower quantiles as time_to_convert's."""
    seconds: dict[int, list[float]] = {}
    for _, path in units(events, request).values():
        for k in range(2, path.level + 1):
            seconds.setdefault(k, []).append((path.times[k - 1] - path.times[k - 2]) / 1000)
    bins = Counter((step, time_bin(value)) for step, values in seconds.items() for value in values)
    quantiles = {
        step: (round(reference.quantile_low(values, 0.5), 3), round(reference.quantile_low(values, 0.9), 3))
        for step, values in seconds.items()
    }
    return dict(bins), quantiles


def _events_by_unit(events: Iterable[EnrichedEvent], request: FunnelRequest) -> dict[str, pd.DataFrame]:
    """Every event of each unit, unfiltered, first received copies (heartbeats left out)."""
    df = reference.frame(events)
    column = str(request.unit)
    df = df[df[column].notna() & ~df.event_type.isin(SKIPPED_TYPES)]
    return {str(key): group for key, group in df.groupby(column)}


def dropped_units(
    events: Iterable[EnrichedEvent], request: FunnelRequest, step: int
) -> list[tuple[str, str, int, int]]:
    """(unit id, device, entered ms, last step ms) of the units with level step - 1, earliest
    entries first. The device: of the unit's events (each image and session has one)."""
    events = list(events)
    by_unit = _events_by_unit(events, request)
    rows = [
        (key, str(by_unit[key].anonymous_id.iloc[0]), path.times[0], path.times[step - 2])
        for key, (_, path) in units(events, request).items()
        if path.level == step - 1
    ]
    return sorted(rows, key=lambda row: (row[2], row[0]))


def paths_after_dropoff(
    events: Iterable[EnrichedEvent], request: FunnelRequest, step: int, depth: int
) -> dict[str, int]:
    """path -> units: the next ``depth`` event types (time order, ties by type) of each dropped
    unit after its last step's time and within the window of its entry; '(end)' for none."""
    events = list(events)
    by_unit = _events_by_unit(events, request)
    window_ms = request.window_s * 1000
    out: Counter[str] = Counter()
    for key, (_, path) in units(events, request).items():
        if path.level != step - 1:
            continue
        group = by_unit[key]
        last, until = path.times[step - 2], path.times[0] + window_ms
        later = group[(group.ts > last) & (group.ts <= until)].sort_values(["ts", "event_type"])
        kinds = [str(kind) for kind in later.event_type][:depth]
        out[" → ".join(kinds) if kinds else "(end)"] += 1
    return dict(out)


def _properties(events: pd.DataFrame, steps: list[str], experiment: str) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for row in events.itertuples():
        for name in DIMENSIONS:
            value = getattr(row, "tool_name" if name == "tool" else name)
            if value is not None and not pd.isna(value) and str(value) != "":
                found.add(("dimension", name, str(value)))
        arm = row.experiments.get(experiment, "") if experiment else ""
        if arm:
            found.add(("dimension", "variant", arm))
        if row.event_type not in steps:
            found.add(("event", "event_type", str(row.event_type)))
    return found


def correlation_counts(
    events: Iterable[EnrichedEvent], request: FunnelRequest, step: int, min_count: int = 0
) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    """(kind, property, value) -> (converted, dropped, converted without, dropped without) among
    the units with level >= step - 1; a unit has the properties of its events from its entry on,
    before its step time if converted, at most the window after its entry if dropped."""
    events = list(events)
    by_unit = _events_by_unit(events, request)
    window_ms = request.window_s * 1000
    steps = list(request.steps)
    has: dict[tuple[str, str, str], list[int]] = {}
    totals = [0, 0]
    for key, (_, path) in units(events, request).items():
        if path.level < step - 1:
            continue
        converted = path.level >= step
        entered = path.times[0]
        group = by_unit[key]
        if converted:
            seen = group[(group.ts >= entered) & (group.ts < path.times[step - 1])]
        else:
            seen = group[(group.ts >= entered) & (group.ts <= entered + window_ms)]
        totals[0 if converted else 1] += 1
        for found in _properties(seen, steps, request.experiment):
            has.setdefault(found, [0, 0])[0 if converted else 1] += 1
    return {found: (c, d, totals[0] - c, totals[1] - d) for found, (c, d) in has.items() if c + d >= min_count}
