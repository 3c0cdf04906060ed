"""Per-unit values of every experiment metric: the one definition of each numerator and denominator.

Owns the clean units (:class:`Members`, each with an integer code) and, per metric, the rows that
feed its numerator and denominator (:class:`MetricRows`), built by one function from the post-period
frames and, unchanged, from the pre-period ones. Invariant: the main analysis, CUPED's covariate,
lift over time and planning all sum these rows with :func:`unit_values` (or :func:`binned_sums`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from funnelstream.contract import EventType

FUNNEL_STEPS: tuple[tuple[str, EventType], ...] = (
    ("upload", EventType.IMAGE_UPLOADED),
    ("tool", EventType.TOOL_SELECTED),
    ("inference", EventType.INFERENCE_REQUESTED),
    ("save", EventType.IMAGE_SAVED),
    ("score", EventType.SCORE_SUBMITTED),
)
INFERENCE_COMPLETED = "inference_completed"
FAILED_STATUS = "failed"
TASK_DURATION = "task_duration_s"
MEAN_SCORE = "mean_score"
INFERENCE_FAILURE_RATE = "inference_failure_rate"
Kind = Literal["any", "sum"]
"""``any``: the unit's value is 1 when it has any numerator row (conversions), with a denominator
of 1; ``sum``: the sums of the numerator and of the denominator rows (ratio metrics)."""


@dataclass(frozen=True, slots=True)
class Members:
    """The clean units of one analysis, each with an integer code (its position): every membership
    test and per-unit sum runs on codes, not on device strings."""

    ids: pd.Index
    variant: np.ndarray
    first_exposure: np.ndarray
    """datetime64[ms] (UTC), NaT where unknown."""
    arrow_ids: pa.Array | None = None
    """``ids`` as Arrow strings, for :meth:`codes`; built from ``ids`` when not given."""

    def __len__(self) -> int:
        return len(self.ids)

    def codes(self, anonymous_ids: pd.Series) -> np.ndarray:
        """Each row's unit code; -1 for a device that is not a clean unit."""
        # Hashed in Arrow: a million units' frames never become Python strings.
        value_set = self.arrow_ids if self.arrow_ids is not None else strings(pd.Series(self.ids))
        column = strings(anonymous_ids)
        if column.type != value_set.type:
            value_set = value_set.cast(column.type)
        found = pc.index_in(column, value_set=value_set)
        return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)

    def sums(self, codes: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Per unit: the sum of ``values`` (default: the count) over rows with that code."""
        return np.bincount(codes, weights=values, minlength=len(self.ids)).astype(float, copy=False)


def strings(column: pd.Series) -> pa.Array:
    """A column of text as one Arrow string array (no copy when it is Arrow-backed already)."""
    array = pa.array(column, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    return array.cast(pa.string())


def timestamps(column: pd.Series | None, length: int) -> np.ndarray:
    """A column of times as datetime64[ms] in UTC without zone; NaT for a missing column."""
    if column is None:
        return np.full(length, np.datetime64("NaT"), dtype="datetime64[ms]")
    return np.asarray(pd.to_datetime(column, utc=True).dt.tz_convert(None).to_numpy("datetime64[ms]"))


def members(units: pd.DataFrame, variants: Sequence[str]) -> Members:
    """The clean units of ``units`` (the ``experiment_units`` frame) in the named arms, once each."""
    known = units[units["variant"].isin(list(variants))]
    dirty = known["contaminated"].fillna(False).astype(bool)
    clean = known.loc[~dirty].drop_duplicates("anonymous_id")
    exposed = clean["first_exposure_at"] if "first_exposure_at" in clean.columns else None
    ids = clean["anonymous_id"]
    return Members(
        pd.Index(ids.to_numpy(object)),
        clean["variant"].to_numpy(object),
        timestamps(exposed, len(clean)),
        strings(ids),
    )


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows of one side of a metric: the unit's code, when the row happened, what it adds."""

    unit: np.ndarray
    ts: np.ndarray
    value: np.ndarray

    def take(self, mask: np.ndarray) -> Rows:
        return Rows(self.unit[mask], self.ts[mask], self.value[mask])

    def __len__(self) -> int:
        return len(self.unit)


@dataclass(frozen=True, slots=True)
class MetricRows:
    name: str
    kind: Kind
    numerator: Rows
    denominator: Rows | None
    """``None`` for ``any``: the denominator is 1 per unit."""

    def capped(self, cap: float) -> MetricRows:
        """The same rows with every numerator value at most ``cap`` (winsorization)."""
        numerator = replace(self.numerator, value=np.minimum(self.numerator.value, cap))
        return replace(self, numerator=numerator)


def _ones(length: int) -> np.ndarray:
    return np.ones(length, dtype=float)


def metric_rows(events: pd.DataFrame, durations: pd.DataFrame, clean: Members) -> dict[str, MetricRows]:
    """Every metric's rows from one period's frames (``events`` with anonymous_id, event_type, score,
    event_ts and status; ``durations`` with anonymous_id, diff_second and saved_at); rows of devices
    that are not clean units are dropped. An image's task time counts at its save."""
    unit = clean.codes(events["anonymous_id"])
    encoded = strings(events["event_type"]).dictionary_encode()
    kinds = encoded.indices.to_numpy(zero_copy_only=False)
    code_of = {name: code for code, name in enumerate(encoded.dictionary.to_pylist())}
    ts = timestamps(events.get("event_ts"), len(events))
    known = unit >= 0

    def of(kind: str) -> np.ndarray:
        code = code_of.get(kind)
        return known & (kinds == code) if code is not None else np.zeros(len(events), dtype=bool)

    rows: dict[str, MetricRows] = {}
    for step, kind in FUNNEL_STEPS:
        mask = of(str(kind))
        rows[f"conversion_{step}"] = MetricRows(
            f"conversion_{step}", "any", Rows(unit[mask], ts[mask], _ones(int(mask.sum()))), None
        )

    scores = events["score"].to_numpy(float, na_value=np.nan) if "score" in events else np.full(len(events), np.nan)
    rated = of(str(EventType.SCORE_SUBMITTED)) & ~np.isnan(scores)
    rated_rows = Rows(unit[rated], ts[rated], scores[rated])
    rows[MEAN_SCORE] = MetricRows(MEAN_SCORE, "sum", rated_rows, replace(rated_rows, value=_ones(len(rated_rows))))

    completed = of(INFERENCE_COMPLETED)
    failed = np.zeros(int(completed.sum()))
    if "status" in events:
        is_failed = pc.equal(strings(events["status"]), FAILED_STATUS).fill_null(False)
        failed = is_failed.to_numpy(zero_copy_only=False)[completed].astype(float)
    inferred = Rows(unit[completed], ts[completed], failed)
    rows[INFERENCE_FAILURE_RATE] = MetricRows(
        INFERENCE_FAILURE_RATE, "sum", inferred, replace(inferred, value=_ones(len(inferred)))
    )

    image_unit = clean.codes(durations["anonymous_id"])
    seconds = durations["diff_second"].to_numpy(float, na_value=np.nan)
    counted = (image_unit >= 0) & ~np.isnan(seconds)
    saved_at = durations.get("saved_at", durations.get("first_tool_click_at"))
    image_ts = timestamps(saved_at, len(durations))
    images = Rows(image_unit[counted], image_ts[counted], seconds[counted])
    rows[TASK_DURATION] = MetricRows(TASK_DURATION, "sum", images, replace(images, value=_ones(len(images))))
    return rows


Bound = np.datetime64 | np.ndarray | None
"""A time bound: one for every row, or one per unit (indexed by the row's unit code)."""


def _mask(part: Rows, until: Bound, since: Bound) -> np.ndarray | None:
    mask = None
    for bound, upper in ((until, True), (since, False)):
        if bound is None:
            continue
        limit = bound[part.unit] if isinstance(bound, np.ndarray) and bound.ndim else bound
        inside = part.ts < limit if upper else part.ts >= limit
        mask = inside if mask is None else mask & inside
    return mask


def _sums(part: Rows, n_units: int, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return np.bincount(part.unit, weights=part.value, minlength=n_units).astype(float, copy=False)
    return np.bincount(part.unit[mask], weights=part.value[mask], minlength=n_units).astype(float, copy=False)


def finish(
    rows: MetricRows, numerator_sums: np.ndarray, denominator_sums: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (numerator, denominator) from the sums of the rows (the kind's rule applied)."""
    if rows.kind == "any":
        return (numerator_sums > 0).astype(float), _ones(len(numerator_sums))
    assert denominator_sums is not None
    return numerator_sums, denominator_sums


def unit_values(
    rows: MetricRows, n_units: int, *, until: Bound = None, since: Bound = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (by code): the metric's numerator and denominator over rows in [since, until)."""
    numerator = _sums(rows.numerator, n_units, _mask(rows.numerator, until, since))
    denominator = None
    if rows.denominator is not None:
        denominator = _sums(rows.denominator, n_units, _mask(rows.denominator, until, since))
    return finish(rows, numerator, denominator)


def binned_sums(
    rows: MetricRows, n_units: int, bins: tuple[np.ndarray, np.ndarray | None], n_bins: int
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Per bin 0..n_bins-1: the per-unit raw sums of the numerator and denominator rows in that bin
    (``bins``: each row's bin, for each side; outside [0, n_bins) is dropped). One pass over the
    rows: a running total of these and :func:`finish` is :func:`unit_values` at each cut-off."""
    sides = [(rows.numerator, bins[0])]
    if rows.denominator is not None:
        assert bins[1] is not None
        sides.append((rows.denominator, bins[1]))
    split = []
    for part, row_bin in sides:
        keep = (row_bin >= 0) & (row_bin < n_bins)
        order = np.argsort(row_bin[keep], kind="stable")
        unit, value = part.unit[keep][order], part.value[keep][order]
        bounds = np.searchsorted(row_bin[keep][order], np.arange(n_bins + 1))
        split.append((unit, value, bounds))
    for b in range(n_bins):
        out = []
        for unit, value, bounds in split:
            lo, hi = bounds[b], bounds[b + 1]
            out.append(np.bincount(unit[lo:hi], weights=value[lo:hi], minlength=n_units).astype(float, copy=False))
        yield out[0], out[1] if len(out) > 1 else None
