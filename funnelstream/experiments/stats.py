"""Estimators and tests of the experiment analysis: ratio metrics with delta-method variance,
arm comparisons (absolute and relative), sequential intervals, quantiles.

It owns every statistical formula; :mod:`funnelstream.experiments.analysis` owns which units and
events go in. Invariant: a comparison's p-value, interval and ``significant`` come from one variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

SEQUENTIAL_LABEL = (
    "sequential: asymptotic confidence sequence (Waudby-Smith et al.), valid at every look; "
    "wider than the fixed-horizon interval"
)


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    alpha: float = 0.05
    winsor_quantile: float | None = 0.99
    """Upper quantile of task durations, over both arms together, where durations are capped."""
    bootstrap_resamples: int = 1000
    seed: int = 0
    sequential: bool = False
    sequential_tuning_n: int = 5000
    """Sample size at which the confidence sequence is tightest."""
    srm_p_threshold: float = 0.001
    contamination_threshold: float = 0.01


class Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class SequentialInterval(Model):
    label: str = SEQUENTIAL_LABEL
    ci_low: float | None
    ci_high: float | None
    lift_ci_low: float | None
    lift_ci_high: float | None
    p_value: float | None


class Comparison(Model):
    variant: str
    control: str
    control_value: float | None
    variant_value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    relative_lift: float | None
    lift_ci_low: float | None
    lift_ci_high: float | None
    p_value: float | None
    significant: bool
    sequential: SequentialInterval | None = None


def finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# --- estimators -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatioEstimate:
    """Σnumerator / Σdenominator over units, with its delta-method variance clustered by unit."""

    units: int
    numerator: float
    denominator: float
    value: float
    variance: float


def ratio_estimate(numerator: np.ndarray, denominator: np.ndarray) -> RatioEstimate:
    n = len(numerator)
    total_x, total_y = float(numerator.sum()), float(denominator.sum())
    if n < 2 or total_y == 0:
        return RatioEstimate(n, total_x, total_y, math.nan, math.nan)
    ratio = total_x / total_y
    mean_y = total_y / n
    cov = np.cov(numerator, denominator, ddof=1)
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * mean_y**2)
    return RatioEstimate(n, total_x, total_y, ratio, float(max(variance, 0.0)))


def _sequential(estimate: float, variance: float, n_total: int, config: AnalysisConfig) -> tuple[float, float]:
    """Half-width and always-valid p-value of an asymptotic confidence sequence."""
    alpha = config.alpha
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / config.sequential_tuning_n
    scale = n_total * rho2
    half = math.sqrt(variance) * math.sqrt(2 * (scale + 1) / scale * math.log(math.sqrt(scale + 1) / alpha))
    z2 = estimate**2 / variance if variance > 0 else math.inf
    p_value = min(1.0, math.sqrt(scale + 1) * math.exp(-z2 * scale / (2 * (scale + 1))))
    return half, p_value


def compare(
    control: RatioEstimate, variant: RatioEstimate, control_key: str, variant_key: str, config: AnalysisConfig
) -> Comparison:
    difference = variant.value - control.value
    variance = variant.variance + control.variance
    z = float(stats.norm.ppf(1 - config.alpha / 2))
    lift = variant.value / control.value - 1 if control.value else math.nan
    # Delta method for the ratio of two independent arm estimates.
    lift_var = (
        variant.variance / control.value**2 + variant.value**2 * control.variance / control.value**4
        if control.value
        else math.nan
    )
    se = math.sqrt(variance) if variance > 0 else math.nan
    p_value = float(2 * stats.norm.sf(abs(difference) / se)) if se == se else math.nan
    lift_se = math.sqrt(lift_var) if lift_var == lift_var and lift_var > 0 else math.nan
    sequential = None
    if config.sequential and se == se:
        half, seq_p = _sequential(difference, variance, control.units + variant.units, config)
        lift_half = half * lift_se / se if lift_se == lift_se else math.nan
        sequential = SequentialInterval(
            ci_low=finite_or_none(difference - half),
            ci_high=finite_or_none(difference + half),
            lift_ci_low=finite_or_none(lift - lift_half),
            lift_ci_high=finite_or_none(lift + lift_half),
            p_value=finite_or_none(seq_p),
        )
    decisive_p = sequential.p_value if sequential else finite_or_none(p_value)
    return Comparison(
        variant=variant_key,
        control=control_key,
        control_value=finite_or_none(control.value),
        variant_value=finite_or_none(variant.value),
        difference=finite_or_none(difference),
        ci_low=finite_or_none(difference - z * se),
        ci_high=finite_or_none(difference + z * se),
        relative_lift=finite_or_none(lift),
        lift_ci_low=finite_or_none(lift - z * lift_se),
        lift_ci_high=finite_or_none(lift + z * lift_se),
        p_value=finite_or_none(p_value),
        significant=decisive_p is not None and decisive_p < config.alpha,
        sequential=sequential,
    )


def weighted_quantiles(sorted_values: np.ndarray, weights: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Inverted-CDF quantiles for each row of ``weights`` (resamples × values); values sorted."""
    cumulative = np.cumsum(weights, axis=-1)
    total = cumulative[..., -1:]
    out = []
    for q in quantiles:
        position = (cumulative < q * total).sum(axis=-1)
        out.append(sorted_values[np.minimum(position, len(sorted_values) - 1)])
    return np.stack(out, axis=-1)
