"""Estimators and tests of the experiment analysis: ratio metrics with delta-method variance, arm
comparisons (absolute and relative), sequential intervals, multiple-testing adjustment, quantiles.

Owns every statistical formula (GrowthBook's); :mod:`clickhouse.experiments.analysis` owns which
units and events go in. Invariant: each interval comes with the p-value of the same estimate,
variance and basis; the tested quantity is the relative lift, so ``significant`` never holds while
the lift interval covers zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from funnelstream.experiments.definitions import Correction as Correction
from funnelstream.experiments.definitions import Direction

Decision = Literal["fixed_horizon", "sequential"]

SEQUENTIAL_LABEL = (
    "sequential: asymptotic confidence sequence (Waudby-Smith et al.), valid at every look; "
    "wider than the fixed-horizon interval"
)
FIXED_HORIZON_LABEL = "fixed horizon: read once, at the planned sample size"


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    alpha: float = 0.05
    winsor_quantile: float | None = None
    """Upper quantile of task durations, over both arms together, where durations are capped; off by
    default, so that an arm's mean task time is the one /v1/task-times and ``report funnel`` give."""
    bootstrap_resamples: int = 1000
    seed: int = 0
    sequential: bool = False
    sequential_tuning_n: int = 5000
    """Sample size (both arms together) at which the confidence sequence is tightest (GrowthBook's N*)."""
    srm_p_threshold: float = 0.001
    contamination_threshold: float = 0.01
    cuped: bool = True
    """Regression-adjust each metric on its units' pre-exposure values (the experiment sets the lookback)."""
    prior_mean: float = 0.0
    """Of the Bayesian view's Gaussian prior on the relative lift."""
    prior_stddev: float = 0.3
    proper_prior: bool = False
    """False: the prior is flat (improper) and the posterior follows the data alone."""
    timeline: bool = True
    """Compute the lift over time."""
    contaminated_listed: int = 100
    """Contaminated units listed by name in the health section (all are counted)."""


class Model(BaseModel):
    # Attribute docstrings become the fields' descriptions in the API's OpenAPI schema.
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


class Interval(Model):
    """One basis's intervals for a comparison, each with the p-value of the same variance."""

    label: str
    ci_low: float | None
    ci_high: float | None
    difference_p_value: float | None = None
    lift_ci_low: float | None
    lift_ci_high: float | None
    lift_ci_clamped: bool = False
    """The lower end of the lift interval was raised to -100 % (see :func:`compare`)."""
    p_value: float | None
    """Of the relative lift, the tested quantity."""


class SequentialInterval(Interval):
    label: str = SEQUENTIAL_LABEL
    units: int | None = None
    """Units of the two arms together: where the sequence stands."""
    tuning_n: int | None = None
    """The sample (both arms) at which the sequence is tightest (GrowthBook's N*)."""


class FixedHorizonInterval(Interval):
    label: str = FIXED_HORIZON_LABEL + "; for reference only when the results are read sequentially"


class CupedSummary(Model):
    """What the regression adjustment did to one comparison (docs/design.md, "Experiment engine")."""

    applied: bool
    """False: no unit of the two arms had pre-period data (or it had no variance); the numbers are unadjusted."""
    theta: float | None
    """Pooled over the two arms."""
    lookback_days: int
    """The pre-period: this many days before each unit's first exposure."""
    units_with_pre_period: int
    """Units of the two arms with at least one pre-period event of the metric."""
    variance_reduction: float | None
    """1 - adjusted / unadjusted variance of the relative lift: 0.36 narrows the interval by 1 - sqrt(0.64) = 20 %."""
    unadjusted_relative_lift: float | None
    """The relative lift without the adjustment."""
    unadjusted_lift_ci_low: float | None
    """The unadjusted lift interval, on the comparison's basis, for reference."""
    unadjusted_lift_ci_high: float | None
    """Upper end of the unadjusted lift interval."""


class BayesianComparison(Model):
    """The Bayesian reading of the same estimates: a Gaussian posterior of the relative lift."""

    chance_to_beat_control: float | None
    """Posterior probability that the variant is better, in the metric's good direction."""
    expected_loss: float | None
    """Expected relative loss of shipping the variant (its risk), in the metric's good direction."""
    control_expected_loss: float | None
    """Expected relative loss of keeping the control."""
    lift_mean: float | None
    """Posterior mean of the relative lift."""
    lift_ci_low: float | None
    """Credible interval of the relative lift at the analysis's 1 - alpha."""
    lift_ci_high: float | None
    """Upper end of the credible interval."""
    prior: str
    """The prior, in words (for example "flat (improper) prior on the relative lift")."""


class Comparison(Model):
    """A variant against the control.

    Regression adjusted (``cuped.applied``): ``difference`` and the lift are those of the adjusted
    means, the lift relative to the control's unadjusted value (GrowthBook's way), while
    ``control_value`` and ``variant_value`` stay the arms' values as measured.

    ``decision`` names the basis of the top-level ``ci_*``, ``lift_ci_*``, ``p_value`` and
    ``significant``: a fixed-horizon t-test, or (sequential mode) the confidence sequence. In
    sequential mode the fixed-horizon numbers are kept apart in ``fixed_horizon`` and the top-level
    ones repeat ``sequential``. ``significant`` is ``p_value < alpha``, or ``p_value_adjusted < alpha``
    once the comparison was adjusted as one of a family (secondary metrics).
    """

    variant: str
    control: str
    control_value: float | None
    variant_value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    difference_p_value: float | None = None
    """Of the absolute difference, from its own variance: below alpha exactly when ``ci_*`` excludes zero."""
    relative_lift: float | None
    lift_standard_error: float | None = None
    lift_dof: float | None = None
    """Welch-Satterthwaite degrees of freedom of the fixed-horizon t-test of the lift."""
    lift_ci_low: float | None
    lift_ci_high: float | None
    lift_ci_clamped: bool = False
    p_value: float | None
    """Of the relative lift: below alpha exactly when ``lift_ci_*`` excludes zero."""
    p_value_adjusted: float | None = None
    """Holm or Benjamini-Hochberg over the comparison's family; ``None`` when not adjusted."""
    significant: bool
    decision: Decision = "fixed_horizon"
    fixed_horizon: FixedHorizonInterval | None = None
    sequential: SequentialInterval | None = None
    cuped: CupedSummary | None = None
    """Set when the comparison was regression adjusted (or tried to be); ``None`` when CUPED is off."""
    bayesian: BayesianComparison | None = None
    """The Bayesian reading of the same estimates; ``None`` when not computed."""


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
    """Of the estimate (not per unit)."""
    nonnegative: bool = True
    """Every unit's numerator and denominator are >= 0, so the true ratio is too."""
    unadjusted_value: float | None = None
    """Regression adjusted: the arm's value as measured (``value`` is the adjusted one)."""
    unadjusted_variance: float | None = None
    theta: float | None = None
    """The CUPED coefficient, pooled over the two arms; ``None`` when not adjusted."""
    cuped: CupedMoments | None = None
    """Set whenever CUPED was asked for, also when it fell back to the unadjusted estimate."""


@dataclass(frozen=True, slots=True)
class CupedMoments:
    """What CUPED saw of one arm: how many units had pre-period data and, when it adjusted, the
    per-unit means and sample covariance that gbstats' relative-lift variance needs. Components:
    (post, pre) for a mean or proportion; (post numerator, post denominator, pre numerator, pre
    denominator) for a ratio."""

    units_with_pre_period: int
    means: tuple[float, ...] = ()
    covariance: tuple[tuple[float, ...], ...] = ()


def _ratio(
    n: int, total_x: float, total_y: float, var_x: float, cov_xy: float, var_y: float, nonnegative: bool
) -> RatioEstimate:
    """Delta method for Σx/Σy from per-unit (sample, n - 1) variances and covariance."""
    if n < 2 or total_y == 0:
        return RatioEstimate(n, total_x, total_y, math.nan, math.nan, nonnegative)
    ratio = total_x / total_y
    mean_y = total_y / n
    variance = (var_x - 2 * ratio * cov_xy + ratio**2 * var_y) / (n * mean_y**2)
    return RatioEstimate(n, total_x, total_y, ratio, float(max(variance, 0.0)), nonnegative)


def ratio_from_sums(
    n: int,
    sum_x: float,
    sum_y: float,
    sum_xx: float,
    sum_yy: float,
    sum_xy: float,
    nonnegative: bool = True,
) -> RatioEstimate:
    """The ratio estimate from sufficient statistics, as a warehouse or GrowthBook would hold them.

    With a denominator of 1 per unit (``sum_y = sum_yy = n``, ``sum_xy = sum_x``) it is gbstats'
    ``SampleMeanStatistic``: mean ``sum_x / n``, variance ``(sum_xx - sum_x**2 / n) / (n - 1) / n``.
    """
    if n < 2:
        return _ratio(n, sum_x, sum_y, math.nan, math.nan, math.nan, nonnegative)
    var_x = (sum_xx - sum_x * sum_x / n) / (n - 1)
    var_y = (sum_yy - sum_y * sum_y / n) / (n - 1)
    cov_xy = (sum_xy - sum_x * sum_y / n) / (n - 1)
    return _ratio(n, sum_x, sum_y, var_x, cov_xy, var_y, nonnegative)


def ratio_estimate(numerator: np.ndarray, denominator: np.ndarray) -> RatioEstimate:
    """The ratio estimate from one numerator and one denominator per unit."""
    n = len(numerator)
    total_x, total_y = float(numerator.sum()), float(denominator.sum())
    nonnegative = bool((numerator >= 0).all() and (denominator >= 0).all())
    if n < 2:
        return _ratio(n, total_x, total_y, math.nan, math.nan, math.nan, nonnegative)
    # Centred covariance (numerically safer than the raw sums); same estimator as ratio_from_sums.
    cov = np.cov(numerator, denominator, ddof=1)
    return _ratio(n, total_x, total_y, float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1]), nonnegative)


# --- tests ------------------------------------------------------------------------------------


def relative_variance(control: RatioEstimate, variant: RatioEstimate) -> float:
    """Delta-method variance of ``variant / control - 1`` for independent arms (GrowthBook's
    ``frequentist_variance_relative``): ``var_b / mean_a**2 + mean_b**2 * var_a / mean_a**4``."""
    if not control.value:
        return math.nan
    a, b = control.value, variant.value
    return variant.variance / a**2 + b**2 * control.variance / a**4


def relative_lift(control: RatioEstimate, variant: RatioEstimate) -> tuple[float, float]:
    """The relative lift and its variance as gbstats' EffectMoments computes them.

    Unadjusted: ``variant / control - 1`` with :func:`relative_variance`. Regression adjusted: the
    difference of the adjusted values over the control's unadjusted value, with
    ``frequentist_variance_relative_cuped`` (mean, proportion) or
    ``frequentist_variance_relative_cuped_ratio`` (ratio), both taken over as they are.
    """
    if not _adjusted(control) or not _adjusted(variant):
        lift = variant.value / control.value - 1 if control.value else math.nan
        return lift, relative_variance(control, variant)
    baseline = control.unadjusted_value
    if not baseline or not control.value:
        return math.nan, math.nan
    lift = (variant.value - control.value) / baseline
    if len(control.cuped.means) == 2:  # type: ignore[union-attr]
        return lift, _cuped_mean_lift_variance(control, variant)
    return lift, _cuped_ratio_lift_variance(control, variant)


def _adjusted(estimate: RatioEstimate) -> bool:
    return estimate.theta is not None and estimate.cuped is not None and bool(estimate.cuped.means)


def _cuped_mean_lift_variance(control: RatioEstimate, variant: RatioEstimate) -> float:
    # gbstats' derivative in the control's post mean is -variant_post / control_post**2, the unadjusted
    # means' ratio (not the adjusted one); kept so that its published vectors are reproduced.
    assert control.cuped is not None and variant.cuped is not None and control.theta is not None
    theta = control.theta
    post_a, post_b = control.cuped.means[0], variant.cuped.means[0]
    (var_post, cov), (_, var_pre) = control.cuped.covariance
    scale = post_b / post_a
    variant_part = variant.variance / post_a**2
    control_part = (var_post * scale**2 - 2 * theta * cov * scale + theta**2 * var_pre) / (control.units * post_a**2)
    return variant_part + control_part


def ratio_gradient(means: Sequence[float] | np.ndarray, theta: float) -> np.ndarray:
    """Gradient of ``m_post / d_post - theta * m_pre / d_pre`` in the four means (gbstats'
    ``RegressionAdjustedRatioStatistic.nabla``); zero when a denominator mean is 0."""
    m_post, d_post, m_pre, d_pre = means
    if d_post == 0 or d_pre == 0:
        return np.zeros(4)
    return np.array([1 / d_post, -m_post / d_post**2, -theta / d_pre, theta * m_pre / d_pre**2])


def _cuped_ratio_lift_variance(control: RatioEstimate, variant: RatioEstimate) -> float:
    assert control.cuped is not None and variant.cuped is not None and control.theta is not None
    assert control.unadjusted_value is not None
    theta = control.theta
    baseline = abs(control.unadjusted_value)
    m_post, d_post = control.cuped.means[0], control.cuped.means[1]
    if baseline == 0 or d_post == 0:
        return math.nan
    difference = variant.value - control.value
    control_gradient = ratio_gradient(control.cuped.means, theta)
    gradient_a = np.array(
        [
            -(baseline + difference) / d_post / baseline**2,
            (m_post * baseline + m_post * difference) / d_post**2 / baseline**2,
            -control_gradient[2] / baseline,
            -control_gradient[3] / baseline,
        ]
    )
    gradient_b = ratio_gradient(variant.cuped.means, theta) / baseline
    cov_a, cov_b = np.array(control.cuped.covariance), np.array(variant.cuped.covariance)
    return float(gradient_a @ cov_a @ gradient_a / control.units + gradient_b @ cov_b @ gradient_b / variant.units)


def welch_dof(control: RatioEstimate, variant: RatioEstimate) -> float:
    """Welch-Satterthwaite degrees of freedom, as gbstats computes them for both difference types."""
    va, vb = control.variance, variant.variance
    denominator = (
        va**2 / (control.units - 1) + vb**2 / (variant.units - 1) if min(control.units, variant.units) > 1 else 0
    )
    return (va + vb) ** 2 / denominator if denominator > 0 else math.nan


def _usable(estimate: float, variance: float) -> bool:
    return math.isfinite(estimate) and math.isfinite(variance) and variance > 0


def _t_test(estimate: float, variance: float, dof: float, alpha: float) -> tuple[float, float, float]:
    """Two-sided fixed-horizon interval and p-value (Welch t, as gbstats' TwoSidedTTest)."""
    if not (_usable(estimate, variance) and dof > 0):
        return math.nan, math.nan, math.nan
    se = math.sqrt(variance)
    half = float(stats.t.ppf(1 - alpha / 2, dof)) * se
    return estimate - half, estimate + half, float(2 * stats.t.sf(abs(estimate) / se, dof))


def _confidence_sequence(
    estimate: float, variance: float, n_total: int, alpha: float, tuning_n: int
) -> tuple[float, float, float]:
    """Asymptotic confidence sequence and always-valid p-value (Waudby-Smith et al. 2023, eq. 9 and
    155; gbstats' SequentialTwoSidedTTest): with rho**2 = (-2 ln a + ln(-2 ln a + 1)) / N* and
    s = n rho**2, the half-width is se * sqrt(2 (s + 1) / s * ln(sqrt(s + 1) / a)) and
    p = min(1, sqrt(s + 1) exp(-z**2 s / (2 (s + 1)))), so p < a exactly when the interval excludes 0."""
    if not _usable(estimate, variance):
        return math.nan, math.nan, math.nan
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning_n
    scale = n_total * rho2
    half = math.sqrt(variance) * math.sqrt(2 * (scale + 1) / scale * math.log(math.sqrt(scale + 1) / alpha))
    z2 = estimate**2 / variance
    p_value = min(1.0, math.sqrt(scale + 1) * math.exp(-z2 * scale / (2 * (scale + 1))))
    return estimate - half, estimate + half, p_value


def _interval_fields(
    difference: tuple[float, float, float], lift: tuple[float, float, float], floor_at_minus_one: bool
) -> dict[str, Any]:
    """The fields of an :class:`Interval` from (low, high, p) of the difference and of the lift."""
    low, high, p_value = lift
    clamped = floor_at_minus_one and math.isfinite(low) and low < -1.0
    return {
        "ci_low": finite_or_none(difference[0]),
        "ci_high": finite_or_none(difference[1]),
        "difference_p_value": finite_or_none(difference[2]),
        "lift_ci_low": -1.0 if clamped else finite_or_none(low),
        "lift_ci_high": finite_or_none(high),
        "lift_ci_clamped": clamped,
        "p_value": finite_or_none(p_value),
    }


def compare(
    control: RatioEstimate,
    variant: RatioEstimate,
    control_key: str,
    variant_key: str,
    config: AnalysisConfig,
    *,
    lookback_days: int = 0,
) -> Comparison:
    """Variant against control, absolute and relative, GrowthBook's way.

    The relative lift's interval and p-value both come from :func:`relative_lift`; the absolute
    difference's from ``var_a + var_b``. Fixed horizon: Welch t. Sequential: the confidence
    sequence of :func:`_confidence_sequence` on the same variances, tuned at
    ``config.sequential_tuning_n``. No lift p-value (and never significant) when the control's value
    is 0 or a variance is 0.

    The lift interval is symmetric (estimate ± half-width), as GrowthBook's, so that it excludes 0
    exactly when the p-value is below alpha. A ratio of non-negative metrics cannot fall by more
    than 100 %, so when both arms are non-negative a lower end below -100 % is raised to -100 % and
    ``lift_ci_clamped`` says so; raising it never changes whether the interval covers 0.

    When the estimates went through CUPED (:mod:`clickhouse.experiments.regression`), ``cuped``
    says what it did, with ``lookback_days`` (the experiment's pre-period) and the unadjusted lift.
    """
    alpha = config.alpha
    difference = variant.value - control.value
    difference_variance = variant.variance + control.variance
    lift, lift_variance = relative_lift(control, variant)
    floor = control.nonnegative and variant.nonnegative
    dof = welch_dof(control, variant)
    fixed = FixedHorizonInterval(
        **_interval_fields(
            _t_test(difference, difference_variance, dof, alpha), _t_test(lift, lift_variance, dof, alpha), floor
        )
    )
    sequential: SequentialInterval | None = None
    if config.sequential:
        n_total = control.units + variant.units
        tuning = config.sequential_tuning_n
        sequential = SequentialInterval(
            **_interval_fields(
                _confidence_sequence(difference, difference_variance, n_total, alpha, tuning),
                _confidence_sequence(lift, lift_variance, n_total, alpha, tuning),
                floor,
            ),
            units=n_total,
            tuning_n=tuning,
        )
    shown: Interval = sequential or fixed
    cuped = None
    if control.cuped is not None or variant.cuped is not None:
        cuped = _cuped_summary(control, variant, lift_variance, config, lookback_days)
    return Comparison(
        variant=variant_key,
        control=control_key,
        control_value=finite_or_none(_measured(control)),
        variant_value=finite_or_none(_measured(variant)),
        difference=finite_or_none(difference),
        ci_low=shown.ci_low,
        ci_high=shown.ci_high,
        difference_p_value=shown.difference_p_value,
        relative_lift=finite_or_none(lift),
        lift_standard_error=finite_or_none(math.sqrt(lift_variance)) if lift_variance >= 0 else None,
        lift_dof=finite_or_none(dof),
        lift_ci_low=shown.lift_ci_low,
        lift_ci_high=shown.lift_ci_high,
        lift_ci_clamped=shown.lift_ci_clamped,
        p_value=shown.p_value,
        significant=shown.p_value is not None and shown.p_value < alpha,
        decision="sequential" if sequential is not None else "fixed_horizon",
        fixed_horizon=fixed if sequential is not None else None,
        sequential=sequential,
        cuped=cuped,
    )


def _measured(estimate: RatioEstimate) -> float:
    return estimate.value if estimate.unadjusted_value is None else estimate.unadjusted_value


def unadjusted(estimate: RatioEstimate) -> RatioEstimate:
    """The estimate as it would be without CUPED."""
    if estimate.unadjusted_value is None or estimate.unadjusted_variance is None:
        return replace(estimate, theta=None, cuped=None)
    return replace(
        estimate,
        value=estimate.unadjusted_value,
        variance=estimate.unadjusted_variance,
        unadjusted_value=None,
        unadjusted_variance=None,
        theta=None,
        cuped=None,
    )


def lift_interval(
    control: RatioEstimate, variant: RatioEstimate, config: AnalysisConfig
) -> tuple[float, float, float, float, float]:
    """(lift, variance, low, high, p) of the relative lift on the configured basis (fixed horizon
    or the confidence sequence): the numbers :func:`compare` puts at its top level."""
    lift, variance = relative_lift(control, variant)
    if config.sequential:
        n_total = control.units + variant.units
        low, high, p_value = _confidence_sequence(lift, variance, n_total, config.alpha, config.sequential_tuning_n)
    else:
        low, high, p_value = _t_test(lift, variance, welch_dof(control, variant), config.alpha)
    return lift, variance, low, high, p_value


def _cuped_summary(
    control: RatioEstimate, variant: RatioEstimate, lift_variance: float, config: AnalysisConfig, lookback_days: int
) -> CupedSummary:
    applied = _adjusted(control) and _adjusted(variant)
    plain_lift, plain_variance, low, high, _ = lift_interval(unadjusted(control), unadjusted(variant), config)
    if applied and _usable(plain_lift, plain_variance) and math.isfinite(lift_variance):
        reduction: float | None = 1 - lift_variance / plain_variance
    else:
        reduction = None
    if control.nonnegative and variant.nonnegative and math.isfinite(low):
        low = max(low, -1.0)
    return CupedSummary(
        applied=applied,
        theta=finite_or_none(control.theta) if applied and control.theta is not None else None,
        lookback_days=lookback_days,
        units_with_pre_period=sum(e.cuped.units_with_pre_period for e in (control, variant) if e.cuped is not None),
        variance_reduction=finite_or_none(reduction) if reduction is not None else None,
        unadjusted_relative_lift=finite_or_none(plain_lift),
        unadjusted_lift_ci_low=finite_or_none(low),
        unadjusted_lift_ci_high=finite_or_none(high),
    )


def harm_check(comparison: Comparison, harmful: Direction, threshold: float, alpha: float) -> tuple[float | None, bool]:
    """(p-value, harmed) of a guardrail: the one-sided test of H0 "the relative change in the
    ``harmful`` direction is at most ``threshold``" against "it is more", at level ``alpha``.

    Fixed horizon: Welch t on the lift with the comparison's standard error and degrees of freedom.
    Sequential: harmed when the confidence sequence's bound on the harmful side is past the
    threshold, with the always-valid p-value of the same sequence, so that ``p < alpha`` exactly
    when harmed. No p-value (and not harmed) when the lift has no usable standard error.
    """
    lift, se = comparison.relative_lift, comparison.lift_standard_error
    if lift is None or se is None or not se > 0:
        return None, False
    excess = (lift if harmful == "increase" else -lift) - threshold
    sequential = comparison.sequential
    if comparison.decision == "sequential" and sequential is not None:
        if sequential.units is None or sequential.tuning_n is None:
            return None, False
        _, _, two_sided = _confidence_sequence(excess, se**2, sequential.units, alpha, sequential.tuning_n)
        # One-sided: an estimate on the harmless side of the threshold is no evidence of harm.
        p_value = two_sided if excess > 0 else 1.0
    else:
        dof = comparison.lift_dof
        if dof is None or not dof > 0:
            return None, False
        p_value = float(stats.t.sf(excess / se, dof))
    return p_value, p_value < alpha


# --- multiple testing -------------------------------------------------------------------------


def adjust_p_values(p_values: Sequence[float | None], method: Correction) -> list[float | None]:
    """Adjusted p-values of one family, in the input's order; ``None`` stays ``None`` and is not
    counted in the family.

    ``holm``: step-down, controls the family-wise error rate: the i-th smallest of m gets
    ``max_{j<=i} min(1, (m - j + 1) p_(j))``. ``benjamini_hochberg``: step-up, controls the false
    discovery rate: ``min_{j>=i} min(1, m p_(j) / j)``. Both are at least the raw p-value.
    """
    present = sorted(((p, i) for i, p in enumerate(p_values) if p is not None))
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    if method == "holm":
        running = 0.0
        for rank, (p, i) in enumerate(present):
            running = max(running, min(1.0, (m - rank) * p))
            adjusted[i] = running
    elif method == "benjamini_hochberg":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            p, i = present[rank]
            running = min(running, m * p / (rank + 1))
            adjusted[i] = running
    else:
        raise ValueError(f"unknown correction {method!r}; expected holm or benjamini_hochberg")
    return adjusted


def adjust_comparisons(comparisons: Sequence[Comparison], method: Correction, alpha: float) -> list[Comparison]:
    """The comparisons of one family with ``p_value_adjusted`` set and ``significant`` decided on it.

    The adjusted p-value is never below the raw one, so an adjusted comparison is significant only
    when its interval excludes zero.
    """
    adjusted = adjust_p_values([c.p_value for c in comparisons], method)
    return [
        c.model_copy(update={"p_value_adjusted": p, "significant": p is not None and p < alpha})
        for c, p in zip(comparisons, adjusted, strict=True)
    ]


# --- quantiles --------------------------------------------------------------------------------


def weighted_quantiles(sorted_values: np.ndarray, weights: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Inverted-CDF quantiles for each row of ``weights`` (resamples × values); values sorted.

    The lower quantile: the smallest value with at least a share q of the weight at or below it
    (for an even count the median is the lower middle value). ClickHouse's equal at every level is
    ``quantileExactWeighted(q)(x, 1)``; ``quantileExactLow`` agrees at 0.5 only.
    """
    cumulative = np.cumsum(weights, axis=-1)
    total = cumulative[..., -1:]
    out = []
    for q in quantiles:
        position = (cumulative < q * total).sum(axis=-1)
        out.append(sorted_values[np.minimum(position, len(sorted_values) - 1)])
    return np.stack(out, axis=-1)
