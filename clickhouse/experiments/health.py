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


def health(frames: ExperimentFrames, experiment: Experiment, config: AnalysisConfig) -> tuple[Health, list[str]]:
    """SRM per value of browser, os, device, source and first-exposure day (UTC), exposures per day,
    and the contaminated units; with one alert line per value out of ratio.

    Rule: within each value, the clean units' counts per arm are tested against the experiment's
    weights (:func:`srm_chi_square`) when every arm expects at least ``MIN_EXPECTED_UNITS`` units
    there, and the value alerts when ``p < config.srm_p_threshold``. Each value is its own test at
    that threshold (no family adjustment): the threshold is strict so that a real break stands out.
    """
    variants = experiment.variant_keys
    weights = np.array(experiment.weights, dtype=float)
    clean = _clean_units(frames.units, variants)
    dimensions = _dimension_values(clean, frames.dimensions)
    day = pd.to_datetime(clean["first_exposure_at"], utc=True).dt.strftime("%Y-%m-%d").to_numpy(object)
    variant = clean["variant"].to_numpy(object)

    rows: list[DimensionSrm] = []
    for name in DIMENSIONS:
        rows += _dimension_srm(name, dimensions[name].to_numpy(object), variant, variants, weights, config)
    by_day = _dimension_srm("day", day, variant, variants, weights, config)
    rows += by_day

    listed, by_reason = _contaminated(frames.contaminated, config.contaminated_listed)
    result = Health(
        dimensions=rows,
        exposures_per_day=[ExposureDay.model_validate({"date": r.value, "units": r.units}) for r in by_day],
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


def _clean_units(units: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """The units the analysis reads: in an arm the definitions name, not contaminated, once each."""
    named = units[units["variant"].isin(variants)]
    dirty = named["contaminated"].fillna(False).astype(bool)
    return named.loc[~dirty].drop_duplicates("anonymous_id").reset_index(drop=True)


def _dimension_values(clean: pd.DataFrame, dimensions: pd.DataFrame) -> pd.DataFrame:
    """Each clean unit's browser, os, device and source, ``unknown`` where the query has none."""
    known = dimensions.drop_duplicates("anonymous_id").set_index("anonymous_id")
    values = known.reindex(pd.Index(clean["anonymous_id"].to_numpy(object)))
    out = {}
    for name in DIMENSIONS:
        column = values[name] if name in values.columns else pd.Series(None, index=values.index, dtype=object)
        column = column.astype(object).where(column.notna(), UNKNOWN)
        out[name] = column.map(lambda v: str(v) or UNKNOWN)
    return pd.DataFrame(out)


def _dimension_srm(
    dimension: Dimension,
    values: np.ndarray,
    variant: np.ndarray,
    variants: Sequence[str],
    weights: np.ndarray,
    config: AnalysisConfig,
) -> list[DimensionSrm]:
    """One row per value: the largest first, days in calendar order."""
    if len(values) == 0:
        return []
    counts = (
        pd.DataFrame({"value": values, "variant": variant})
        .groupby(["value", "variant"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(variants), fill_value=0)
    )
    totals = counts.sum(axis=1)
    if dimension == "day":
        order = sorted(counts.index)
    else:
        order = sorted(counts.index, key=lambda v: (-int(totals[v]), str(v)))
    expected_shares = weights / weights.sum()
    rows = []
    for value in order:
        observed = counts.loc[value].to_numpy(float)
        total = observed.sum()
        chi2 = p_value = math.nan
        if (expected_shares * total).min() >= MIN_EXPECTED_UNITS:
            chi2, p_value = srm_chi_square(observed, weights)
        rows.append(
            DimensionSrm(
                dimension=dimension,
                value=str(value),
                units={k: int(n) for k, n in zip(variants, observed, strict=True)},
                shares={k: finite_or_none(n / total) for k, n in zip(variants, observed, strict=True)},
                expected_shares={k: float(s) for k, s in zip(variants, expected_shares, strict=True)},
                chi2=finite_or_none(chi2),
                p_value=finite_or_none(p_value),
                alert=bool(p_value < config.srm_p_threshold),
            )
        )
    return rows


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
