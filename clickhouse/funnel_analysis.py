"""Drop-off analytics over a funnel's units: conversion over time, the time-to-convert distribution,
the units that dropped at a step, what they did next, and what goes with dropping off.

Each call runs one named query over the view ``funnel_units`` and returns an ``Answer`` (rows and
the SQL that ran); the correlation's statistics over its counts are computed here, once
(``correlation_statistics``). Invariant: the units, levels and paths are the funnel's own.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from scipy.stats import fisher_exact

from clickhouse.backend import WarehouseReads
from clickhouse.queries import FunnelRequest
from clickhouse.workspace.answers import Answer, Rows, answer

Interval = Literal["hour", "day"]
SIGNIFICANCE_LEVEL = 0.05
SMOOTHING = 1
"""Added to each of the four counts of an odds ratio, as PostHog's correlation does: a property no
dropped unit has still gets a finite ratio."""


def _parameters(request: FunnelRequest, **more: Any) -> dict[str, Any]:
    return {**request.parameters(), **more}


def check_step(request: FunnelRequest, step: int) -> None:
    """A drop-off step is a step of the funnel after the first."""
    if not 2 <= step <= len(request.steps):
        raise ValueError(f"step: must be between 2 and the funnel's {len(request.steps)} steps, got {step}")


def over_time(reader: WarehouseReads, request: FunnelRequest, interval: Interval) -> Answer:
    """Per bucket of entry and step: units, conversion from the bucket's entries, complete."""
    return answer(reader, "funnel_over_time", _parameters(request, interval=interval), **request.completeness())


def ttc_histogram(reader: WarehouseReads, request: FunnelRequest) -> Answer:
    """Per step from the second: units per log2 bin of seconds from the previous step, P50/P90."""
    return answer(reader, "funnel_ttc_histogram", _parameters(request), **request.completeness())


def dropped_units(reader: WarehouseReads, request: FunnelRequest, step: int, limit: int) -> Answer:
    """The units that reached ``step - 1`` and not ``step``, earliest entries first."""
    check_step(request, step)
    return answer(
        reader, "funnel_dropped_units", _parameters(request, step=step, limit=limit), **request.completeness()
    )


def paths_after_dropoff(reader: WarehouseReads, request: FunnelRequest, step: int, depth: int, limit: int) -> Answer:
    """The most common sequences of the next ``depth`` event types of the units that dropped at ``step``."""
    check_step(request, step)
    parameters = _parameters(request, step=step, depth=depth, limit=limit)
    return answer(reader, "funnel_paths_after_dropoff", parameters, **request.completeness())


def correlation(reader: WarehouseReads, request: FunnelRequest, step: int, min_count: int) -> Answer:
    """Per property of the units that reached ``step - 1``: its counts, odds ratio of converting,
    p-value and significance mark, the strongest first."""
    counted = correlation_counts(reader, request, step, min_count)
    return Answer(correlation_statistics(counted.rows), counted.sql, request.completeness())


def correlation_counts(reader: WarehouseReads, request: FunnelRequest, step: int, min_count: int) -> Answer:
    """The counts of ``funnel_correlation.sql`` per property, every property included."""
    check_step(request, step)
    return answer(reader, "funnel_correlation", _parameters(request, step=step, min_count=min_count))


def correlation_statistics(rows: Rows, level: float = SIGNIFICANCE_LEVEL) -> Rows:
    """Rows with ``converted, dropped, converted_without, dropped_without`` gain ``odds_ratio``
    (odds of converting with the property over without, each count + 1), ``p_value`` (two-sided
    Fisher exact test of the 2x2 table) and ``significant`` (Benjamini-Hochberg at ``level`` over
    these rows); sorted by |log odds ratio|, largest first, then property and value. A property that
    every unit has, or none has, says nothing about converting and is left out: smoothing would
    otherwise give it an odds ratio far from 1 and put it at the top."""
    out = []
    for row in rows:
        converted, dropped = int(row["converted"]), int(row["dropped"])
        converted_without, dropped_without = int(row["converted_without"]), int(row["dropped_without"])
        if converted + dropped == 0 or converted_without + dropped_without == 0:
            continue
        odds_ratio = ((converted + SMOOTHING) / (dropped + SMOOTHING)) / (
            (converted_without + SMOOTHING) / (dropped_without + SMOOTHING)
        )
        table = [[converted, dropped], [converted_without, dropped_without]]
        p_value = float(fisher_exact(table, alternative="two-sided").pvalue)
        out.append({**row, "odds_ratio": odds_ratio, "p_value": min(p_value, 1.0), "significant": False})
    # Benjamini-Hochberg: the k smallest p-values are discoveries, k the largest rank with
    # p_(k) <= k / m * level.
    ranked = sorted(range(len(out)), key=lambda index: out[index]["p_value"])
    discoveries = 0
    for rank, index in enumerate(ranked, start=1):
        if out[index]["p_value"] <= rank / len(out) * level:
            discoveries = rank
    for index in ranked[:discoveries]:
        out[index]["significant"] = True
    out.sort(key=lambda row: (-abs(math.log(row["odds_ratio"])), str(row["property"]), str(row["value"])))
    return out
