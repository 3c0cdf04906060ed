"""The Bayesian reading of a comparison, GrowthBook's default (gbstats ``EffectBayesianABTest``).

Owns the posterior of the relative lift: Gaussian, from the same lift and variance as the
frequentist test (:func:`~clickhouse.experiments.stats.relative_lift`, CUPED included) and a
Gaussian prior on the relative lift. Invariant: every number is in the metric's good direction,
and with a flat prior the posterior mean and credible interval equal the lift and its z-interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from clickhouse.experiments.stats import AnalysisConfig, BayesianComparison, RatioEstimate, relative_lift
from funnelstream.experiments.definitions import Direction


@dataclass(frozen=True, slots=True)
class Prior:
    """Gaussian prior on the relative lift; not ``proper``: flat, the posterior follows the data."""

    mean: float = 0.0
    stddev: float = 0.3
    proper: bool = False

    @classmethod
    def from_config(cls, config: AnalysisConfig) -> Prior:
        return cls(config.prior_mean, config.prior_stddev, config.proper_prior)

    def describe(self) -> str:
        if not self.proper:
            return "flat (improper) prior on the relative lift: the posterior follows the data alone"
        return f"Gaussian prior on the relative lift: mean {self.mean:+.1%}, standard deviation {self.stddev:.1%}"


def bayesian_compare(
    control: RatioEstimate, variant: RatioEstimate, prior: Prior, good: Direction, alpha: float
) -> BayesianComparison:
    """Chance to beat control, expected losses and the credible interval of the relative lift.

    The posterior is the data's Gaussian (lift, variance) times the prior when proper (precisions
    add). Chance to beat control: the posterior mass on the good side of 0. Expected loss of
    shipping the variant: the posterior mean of the lift's shortfall on the bad side,
    ``E[max(0, -lift)]`` for a metric that should increase; of keeping the control, the mirror
    image. Empty (``None``) when either arm has no variance or the control's value is 0.
    """
    described = prior.describe()
    lift, variance = relative_lift(control, variant)
    usable = control.variance > 0 and variant.variance > 0 and math.isfinite(lift) and variance > 0
    if not usable:
        return BayesianComparison(
            chance_to_beat_control=None,
            expected_loss=None,
            control_expected_loss=None,
            lift_mean=None,
            lift_ci_low=None,
            lift_ci_high=None,
            prior=described,
        )
    precision = 1 / variance
    mean = lift
    if prior.proper:
        prior_precision = 1 / prior.stddev**2
        mean = (lift * precision + prior.mean * prior_precision) / (precision + prior_precision)
        precision += prior_precision
    sd = math.sqrt(1 / precision)
    above_zero = float(stats.norm.sf(0, mean, sd))
    gain, shortfall = _positive_part_mean(mean, sd), _positive_part_mean(-mean, sd)
    increase = good == "increase"
    low, high = (float(q) for q in stats.norm.ppf([alpha / 2, 1 - alpha / 2], mean, sd))
    return BayesianComparison(
        chance_to_beat_control=above_zero if increase else 1 - above_zero,
        expected_loss=shortfall if increase else gain,
        control_expected_loss=gain if increase else shortfall,
        lift_mean=mean,
        lift_ci_low=low,
        lift_ci_high=high,
        prior=described,
    )


def _positive_part_mean(mean: float, sd: float) -> float:
    """E[max(X, 0)] for X ~ N(mean, sd**2): gbstats' P(X > 0) * E[X | X > 0], in closed form."""
    z = mean / sd
    return float(mean * stats.norm.cdf(z) + sd * stats.norm.pdf(z))
