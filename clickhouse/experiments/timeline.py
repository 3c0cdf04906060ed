"""Lift over time: each metric's comparison cumulated per day since the start, and per exposure day.

Owns which units and rows count at each point; the per-unit values are :mod:`~clickhouse.experiments.units`'
and the estimate is the main analysis's (handed in as ``compare_arms``, CUPED and sequential included).
Invariant: the last cumulative point counts every unit and row, so it equals the main result; one pass
over the rows per metric (rows binned by day, per-unit sums by bincount), at most ``MAX_POINTS`` each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from clickhouse.experiments.results import MetricTimeline, TimelinePoint
from clickhouse.experiments.stats import Comparison
from clickhouse.experiments.units import Members, MetricRows, Rows, binned_sums, finish

MAX_POINTS = 60
DAY = np.timedelta64(1, "D")
CompareArms = Callable[[str, np.ndarray, np.ndarray, np.ndarray], list[Comparison]]
"""(metric, per-unit numerator, per-unit denominator, mask of the units counted) -> one comparison
per variant, as the main result computes it."""


def _naive_utc(moment: dt.datetime) -> Any:
    """As the rows' times are: datetime64[ms] in UTC without a zone (a naive ``moment`` is UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return np.datetime64(moment, "ms")


def _day_floor(value: Any) -> Any:
    return np.datetime64(value.astype("datetime64[D]"), "ms")


def _bins(ts: np.ndarray, origin: np.datetime64, step: np.timedelta64, n_bins: int) -> np.ndarray:
    """Each time's bin from ``origin`` in steps of ``step``, clipped to [0, n_bins); NaT in the last."""
    index = np.floor((ts - origin) / step)
    return np.where(np.isnan(index), n_bins - 1, np.clip(index, 0, n_bins - 1)).astype(np.int64)


def _exposure_day(part: Rows, exposed: np.ndarray) -> np.ndarray:
    """Each row's day since its unit's first exposure; rows without a time fall outside every day."""
    days = np.floor((part.ts - exposed[part.unit]) / DAY)
    return np.where(np.isnan(days), -1, days).astype(np.int64)


def _point(comparison: Comparison, day: int, date: dt.date | None, units: dict[str, int]) -> TimelinePoint:
    return TimelinePoint(
        day=day,
        date=date,
        variant=comparison.variant,
        units=units,
        control_value=comparison.control_value,
        variant_value=comparison.variant_value,
        relative_lift=comparison.relative_lift,
        lift_ci_low=comparison.lift_ci_low,
        lift_ci_high=comparison.lift_ci_high,
        p_value=comparison.p_value,
        significant=comparison.significant,
    )


def _arm_units(arms: Mapping[str, np.ndarray], mask: np.ndarray, control: str, variant: str) -> dict[str, int]:
    return {key: int(np.count_nonzero(arms[key] & mask)) if key in arms else 0 for key in (control, variant)}


def _last_time(clean: Members, rows: Mapping[str, MetricRows]) -> Any:
    """The latest exposure or row time (datetime64[ms]); ``None`` when there is none."""
    times = [clean.first_exposure]
    for metric in rows.values():
        times += [metric.numerator.ts] + ([metric.denominator.ts] if metric.denominator is not None else [])
    # On the integer view NaT is the smallest value, so a maximum ignores it unless all are NaT.
    latest = max((int(t.view(np.int64).max()) for t in times if len(t)), default=None)
    if latest is None or latest == np.iinfo(np.int64).min:
        return None
    return np.datetime64(latest, "ms")


def timeline(
    clean: Members,
    rows: Mapping[str, MetricRows],
    compare_arms: CompareArms,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> list[MetricTimeline]:
    """Per metric of ``rows``: cumulative points per UTC day from ``start`` (default: the first
    exposure's day) to the last day with data or ``end``, and points per exposure day k over the
    units observed for all of day k (first exposure + k + 1 days at most the last time observed)."""
    last = _last_time(clean, rows)
    exposed = clean.first_exposure
    if last is None or not len(clean) or np.isnat(exposed).all():
        return []
    if end is not None:
        last = min(last, _naive_utc(end))
    first = _naive_utc(start) if start is not None else np.nanmin(exposed)
    origin = _day_floor(first)
    days = int((_day_floor(last) - origin) / DAY) + 1
    # Long experiments keep at most MAX_POINTS points: a step of several days, ending on the last.
    span = max(1, -(-days // MAX_POINTS))
    n_cumulative = -(-days // span)
    step = DAY * span
    unit_bin = _bins(exposed, origin, step, n_cumulative)
    n_by_exposure = int(min(MAX_POINTS, max(0, np.floor((last - np.nanmin(exposed)) / DAY))))
    observed_days = np.floor((last - exposed) / DAY)
    n = len(clean)
    arms = {key: clean.variant == key for key in pd.unique(clean.variant)}

    out = []
    for name, metric in rows.items():
        cumulative: list[TimelinePoint] = []
        den_ts = metric.denominator.ts if metric.denominator is not None else None
        bins = (
            _bins(metric.numerator.ts, origin, step, n_cumulative),
            _bins(den_ts, origin, step, n_cumulative) if den_ts is not None else None,
        )
        running_num, running_den = np.zeros(n), np.zeros(n)
        for b, (num, den) in enumerate(binned_sums(metric, n, bins, n_cumulative)):
            running_num += num
            if den is not None:
                running_den += den
            mask = unit_bin <= b
            values = finish(metric, running_num, running_den if den is not None else None)
            day = min((b + 1) * span, days) - 1
            date = (origin + DAY * day).astype(dt.date)
            for c in compare_arms(name, *values, mask):
                cumulative.append(_point(c, day, date, _arm_units(arms, mask, c.control, c.variant)))

        by_exposure: list[TimelinePoint] = []
        if n_by_exposure:
            k_bins = (
                _exposure_day(metric.numerator, exposed),
                _exposure_day(metric.denominator, exposed) if metric.denominator is not None else None,
            )
            for k, (num, den) in enumerate(binned_sums(metric, n, k_bins, n_by_exposure)):
                mask = observed_days >= k + 1
                values = finish(metric, num, den)
                for c in compare_arms(name, *values, mask):
                    by_exposure.append(_point(c, k, None, _arm_units(arms, mask, c.control, c.variant)))
        out.append(MetricTimeline(metric=name, cumulative=cumulative, by_exposure_day=by_exposure))
    return out
