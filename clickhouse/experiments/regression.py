"""Regression adjustment (CUPED) of one metric's two arms on each unit's pre-exposure value.

Owns the adjusted estimators, GrowthBook's: ``RegressionAdjustedStatistic`` for means and
proportions and ``RegressionAdjustedRatioStatistic`` (delta method, 4x4 covariance) for ratios,
with theta pooled over the two arms. Invariant: an arm is adjusted only together with the other,
with the same theta; without pre-period data, or without variance in it, both arms get the plain
:func:`~clickhouse.experiments.stats.ratio_estimate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from clickhouse.experiments.stats import CupedMoments, RatioEstimate, ratio_estimate, ratio_gradient

MetricKind = Literal["proportion", "mean", "ratio"]

RATIO_THETA_FLOOR = 1e-8
"""Below this |theta| a ratio is left unadjusted (gbstats reverts to the plain ratio there too)."""


@dataclass(frozen=True, slots=True, eq=False)
class UnitValues:
    """One arm's per-unit values of one metric: post period, and the pre period when CUPED has one.

    For a proportion or a mean the denominator is 1 per unit and the covariate is ``pre_numerator``
    (0 for a unit without pre-period data); for a ratio both pre arrays are the covariate.
    """

    numerator: np.ndarray
    denominator: np.ndarray
    pre_numerator: np.ndarray | None = None
    pre_denominator: np.ndarray | None = None


@dataclass(frozen=True, slots=True, eq=False)
class ArmMoments:
    """One arm's sufficient statistics for CUPED: the unit count, the means and the per-unit sample
    (n - 1) covariance of its components, (post, pre) or (post numerator, post denominator, pre
    numerator, pre denominator)."""

    n: int
    means: np.ndarray
    covariance: np.ndarray
    units_with_pre_period: int = 0
    nonnegative: bool = True

    @classmethod
    def from_units(cls, components: Sequence[np.ndarray], units_with_pre_period: int) -> ArmMoments:
        data = np.vstack([np.asarray(c, dtype=float) for c in components])
        n = data.shape[1]
        # Centred covariance: numerically safer than raw sums of products on a million units.
        covariance = np.cov(data, ddof=1) if n > 1 else np.full((len(data), len(data)), math.nan)
        return cls(n, data.mean(axis=1), covariance, units_with_pre_period, bool((data >= 0).all()))

    @classmethod
    def from_sums(
        cls, n: int, sums: Sequence[float], products: Sequence[Sequence[float]], units_with_pre_period: int = 0
    ) -> ArmMoments:
        """From sums and sums of products, as a warehouse or gbstats' statistics hold them."""
        total = np.asarray(sums, dtype=float)
        covariance = (np.asarray(products, dtype=float) - np.outer(total, total) / n) / (n - 1)
        return cls(n, total / n, covariance, units_with_pre_period)


def estimate_pair(
    control: UnitValues, variant: UnitValues, kind: MetricKind, adjust: bool
) -> tuple[RatioEstimate, RatioEstimate]:
    """Both arms' estimates, regression adjusted when ``adjust`` and the pre period allows it.

    Proportions and means use each unit's own value and denominator 1 with the sample (n - 1)
    variance, as :func:`~clickhouse.experiments.stats.ratio_estimate` does, where gbstats takes
    p(1 - p) for a proportion: the two differ by n / (n - 1).
    """
    plain = (
        ratio_estimate(control.numerator, control.denominator),
        ratio_estimate(variant.numerator, variant.denominator),
    )
    if not adjust or not _has_pre_period(control, kind) or not _has_pre_period(variant, kind):
        return plain
    moments = _arm_moments(control, kind), _arm_moments(variant, kind)
    adjusted = adjusted_pair(*moments)
    if adjusted is not None:
        return adjusted
    # Asked for and not possible: the plain estimates, marked so that the report says CUPED fell back.
    return (
        _tried(plain[0], moments[0].units_with_pre_period),
        _tried(plain[1], moments[1].units_with_pre_period),
    )


def adjusted_pair(control: ArmMoments, variant: ArmMoments) -> tuple[RatioEstimate, RatioEstimate] | None:
    """The two arms regression adjusted with theta pooled over both; ``None`` when the pooled pre
    period has no variance (gbstats' theta of 0) or an arm has too few units to adjust."""
    if min(control.n, variant.n) < 2:
        return None
    if len(control.means) == 2:
        theta = pooled_theta(control, variant)
        if theta == 0:
            return None
        return _adjusted_mean(control, theta), _adjusted_mean(variant, theta)
    if any(arm.means[1] == 0 or arm.means[3] == 0 for arm in (control, variant)):
        # An arm without any pre-period (or post) denominator has no adjusted ratio; gbstats would report 0.
        return None
    theta = pooled_ratio_theta(control, variant)
    if abs(theta) < RATIO_THETA_FLOOR:
        return None
    return _adjusted_ratio(control, theta), _adjusted_ratio(variant, theta)


def pooled_theta(control: ArmMoments, variant: ArmMoments) -> float:
    """Covariance of post and pre over the pre variance, both arms taken as one sample (gbstats'
    ``compute_theta``); 0 when either period has no variance."""
    n = control.n + variant.n
    gap = control.means - variant.means
    joint = (
        (control.n - 1) * control.covariance
        + (variant.n - 1) * variant.covariance
        + control.n * variant.n / n * np.outer(gap, gap)
    ) / (n - 1)
    if not joint[0, 0] > 0 or not joint[1, 1] > 0:
        return 0.0
    return float(joint[0, 1] / joint[1, 1])


def pooled_ratio_theta(control: ArmMoments, variant: ArmMoments) -> float:
    """The pre-period ratio's per-unit regression coefficient with the post ratio, summed over the
    arms (gbstats' ``compute_theta_regression_adjusted_ratio``); 0 when the pre ratio has no variance."""
    covariance, pre_variance = 0.0, 0.0
    for arm in (control, variant):
        gradient = ratio_gradient(arm.means, 1.0)
        pre, post = gradient[2:], gradient[:2]
        covariance += float(pre @ arm.covariance[2:, :2] @ post)
        pre_variance += float(pre @ arm.covariance[2:, 2:] @ pre)
    if not pre_variance > 0:
        return 0.0
    return -covariance / pre_variance


def _adjusted_mean(arm: ArmMoments, theta: float) -> RatioEstimate:
    post, pre = arm.means
    (var_post, cov), (_, var_pre) = arm.covariance
    per_unit = var_post + theta**2 * var_pre - 2 * theta * cov
    return RatioEstimate(
        units=arm.n,
        numerator=float(post * arm.n),
        denominator=float(arm.n),
        value=float(post - theta * pre),
        variance=float(max(per_unit, 0.0) / arm.n),
        nonnegative=arm.nonnegative,
        unadjusted_value=float(post),
        unadjusted_variance=float(var_post / arm.n),
        theta=theta,
        cuped=_moments(arm),
    )


def _adjusted_ratio(arm: ArmMoments, theta: float) -> RatioEstimate:
    m_post, d_post, m_pre, d_pre = arm.means
    gradient, plain_gradient = ratio_gradient(arm.means, theta), ratio_gradient(arm.means, 0.0)
    return RatioEstimate(
        units=arm.n,
        numerator=float(m_post * arm.n),
        denominator=float(d_post * arm.n),
        value=float(m_post / d_post - theta * m_pre / d_pre),
        variance=float(max(gradient @ arm.covariance @ gradient, 0.0) / arm.n),
        nonnegative=arm.nonnegative,
        unadjusted_value=float(m_post / d_post),
        unadjusted_variance=float(max(plain_gradient @ arm.covariance @ plain_gradient, 0.0) / arm.n),
        theta=theta,
        cuped=_moments(arm),
    )


def _moments(arm: ArmMoments) -> CupedMoments:
    return CupedMoments(
        units_with_pre_period=arm.units_with_pre_period,
        means=tuple(float(m) for m in arm.means),
        covariance=tuple(tuple(float(c) for c in row) for row in arm.covariance),
    )


def _tried(estimate: RatioEstimate, units_with_pre_period: int) -> RatioEstimate:
    return replace(
        estimate,
        unadjusted_value=estimate.value,
        unadjusted_variance=estimate.variance,
        cuped=CupedMoments(units_with_pre_period=units_with_pre_period),
    )


def _has_pre_period(values: UnitValues, kind: MetricKind) -> bool:
    if values.pre_numerator is None:
        return False
    return kind != "ratio" or values.pre_denominator is not None


def _arm_moments(values: UnitValues, kind: MetricKind) -> ArmMoments:
    assert values.pre_numerator is not None
    if kind == "ratio":
        assert values.pre_denominator is not None
        components = [values.numerator, values.denominator, values.pre_numerator, values.pre_denominator]
        with_pre = int(np.count_nonzero(values.pre_denominator > 0))
    else:
        components = [values.numerator, values.pre_numerator]
        with_pre = int(np.count_nonzero(values.pre_numerator))
    return ArmMoments.from_units(components, with_pre)
