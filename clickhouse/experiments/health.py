"""Experiment health by dimension: where a broken client or a leak between arms shows.

Owns the sample-ratio chi-square (the whole experiment's and each dimension value's), exposures per
day and the contaminated units' listing, from the frames the warehouse computed. Invariant: the units
checked are the analysis's clean units (in a named arm, not contaminated, once each); a value too
small for a chi-square is shown with its counts and never alerts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from clickhouse.experiments.results import ContaminatedUnit, DimensionSrm, ExposureDay, Health
from clickhouse.experiments.stats import AnalysisConfig, finite_or_none
from clickhouse.experiments.units import Members, members
from funnelstream.experiments.definitions import Experiment

if TYPE_CHECKING:
    # analysis.py calls health(); the frames' class is needed for annotations only.
    from clickhouse.experiments.analysis import ExperimentFrames

Dimension = Literal["browser", "os", "device", "source", "day"]
DIMENSIONS: tuple[Dimension, ...] = ("browser", "os", "device", "source")
UNKNOWN = "unknown"
MIN_EXPECTED_UNITS = 5.0
"""Below this expected count in an arm the chi-square approximation is not trusted: no test."""


def srm_chi_square(observed: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square of the arms' unit counts against the shares the weights give, and its
    p-value (k - 1 degrees of freedom); NaN for both when there is no unit."""
    total = float(observed.sum())
    if total == 0:
        return math.nan, math.nan
    expected = weights / weights.sum() * total
    chi2, p_value = stats.chisquare(observed, f_exp=expected)
    return float(chi2), float(p_value)


def health(
    frames: ExperimentFrames, experiment: Experiment, config: AnalysisConfig, clean: Members | None = None
) -> tuple[Health, list[str]]:
    """SRM per value of browser, os, device, source and first-exposure day (UTC), exposures per day,
    and the contaminated units; with one alert line per value out of ratio.

    Rule: within each value, the clean units' counts per arm are tested against the experiment's
    weights (:func:`srm_chi_square`) when every arm expects at least ``MIN_EXPECTED_UNITS`` units
    there, and the value alerts when ``p < config.srm_p_threshold``. Each value is its own test at
    that threshold (no family adjustment): the threshold is strict so that a real break stands out.
    ``clean``: the analysis's :func:`~clickhouse.experiments.units.members` of ``frames.units``, when
    it has them already.
    """
    variants = experiment.variant_keys
    weights = np.array(experiment.weights, dtype=float)
    clean = clean if clean is not None else members(frames.units, variants)
    arm = pd.Index(variants).get_indexer(clean.variant)
    dimensions = frames.dimensions
    # Each dimensions row's unit (-1: not a clean unit); a unit without a row keeps the missing code.
    unit = clean.codes(dimensions["anonymous_id"])
    mine = unit >= 0

    rows: list[DimensionSrm] = []
    for name in DIMENSIONS:
        column = dimensions[name] if name in dimensions.columns else pd.Series(None, index=dimensions.index)
        # Factorized on the frame's own column (Arrow strings stay Arrow), then placed per unit.
        codes, uniques = pd.factorize(column, use_na_sentinel=False)
        per_unit = np.full(len(clean), len(uniques))
        per_unit[unit[mine]] = codes[mine]
        values = np.array([*uniques, None], dtype=object)
        rows += _dimension_srm(name, per_unit, values, arm, variants, weights, config)
    days, uniques = pd.factorize(clean.first_exposure.astype("datetime64[D]"), use_na_sentinel=False)
    by_day = _dimension_srm("day", days, np.asarray(uniques, dtype=object), arm, variants, weights, config)
    rows += by_day

    listed, by_reason = _contaminated(frames.contaminated, config.contaminated_listed)
    result = Health(
        dimensions=rows,
        exposures_per_day=[
            ExposureDay.model_validate({"date": r.value, "units": r.units}) for r in by_day if r.value != UNKNOWN
        ],
        contaminated_by_reason=by_reason,
        contaminated_units=listed,
        contaminated_units_listed_limit=config.contaminated_listed,
    )
    alerts = [
        f"sample ratio mismatch in {r.dimension} = {r.value}: chi-square p = {r.p_value:.1e}"
        for r in rows
        if r.alert and r.p_value is not None
    ]
    return result, alerts


def _label(value: Any) -> str:
    """A dimension value as the report shows it: ``unknown`` where the client sent none."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return UNKNOWN
    if isinstance(value, np.datetime64):
        return UNKNOWN if np.isnat(value) else str(value.astype("datetime64[D]"))
    return str(value) or UNKNOWN


def _dimension_srm(
    dimension: Dimension,
    codes: np.ndarray,
    uniques: np.ndarray,
    arm: np.ndarray,
    variants: Sequence[str],
    weights: np.ndarray,
    config: AnalysisConfig,
) -> list[DimensionSrm]:
    """One row per value (``codes``: each unit's index into ``uniques``; ``arm``: its variant's): the
    largest first, days in calendar order. Counted on integer codes, so a million units cost a bincount."""
    if len(codes) == 0:
        return []
    k = len(variants)
    per_code = np.bincount(codes * k + arm, minlength=len(uniques) * k).reshape(len(uniques), k)
    counts: dict[str, np.ndarray] = {}
    for unique, row in zip(uniques, per_code, strict=True):
        if not row.any():
            continue
        label = _label(unique)
        counts[label] = counts.get(label, 0) + row  # '' and NULL are both unknown: one value
    by_size = sorted(counts, key=lambda v: (-int(counts[v].sum()), v))
    order = sorted(counts) if dimension == "day" else by_size
    expected_shares = weights / weights.sum()
    out = []
    for value in order:
        observed = counts[value].astype(float)
        total = observed.sum()
        chi2 = p_value = math.nan
        if (expected_shares * total).min() >= MIN_EXPECTED_UNITS:
            chi2, p_value = srm_chi_square(observed, weights)
        out.append(
            DimensionSrm(
                dimension=dimension,
                value=value,
                units={key: int(n) for key, n in zip(variants, observed, strict=True)},
                shares={key: finite_or_none(n / total) for key, n in zip(variants, observed, strict=True)},
                expected_shares={key: float(share) for key, share in zip(variants, expected_shares, strict=True)},
                chi2=finite_or_none(chi2),
                p_value=finite_or_none(p_value),
                alert=bool(p_value < config.srm_p_threshold),
            )
        )
    return out


def _strings(value: Any) -> list[str]:
    """An Array(String) cell as a list (chdb gives numpy arrays, a hand-made frame lists)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [str(v) for v in value]


def _contaminated(contaminated: pd.DataFrame, limit: int) -> tuple[list[ContaminatedUnit], dict[str, int]]:
    """The first ``limit`` contaminated units by anonymous_id, and how many there are per reason."""
    units = contaminated.drop_duplicates("anonymous_id").sort_values("anonymous_id", kind="stable")
    by_reason = {str(k): int(n) for k, n in units["reason"].value_counts().sort_index().items()}
    listed = [
        ContaminatedUnit(
            anonymous_id=str(row.anonymous_id),
            reason=row.reason,
            variants=_strings(row.variants),
            user_ids=_strings(row.user_ids),
        )
        for row in units.head(limit).itertuples(index=False)
    ]
    return listed, by_reason
