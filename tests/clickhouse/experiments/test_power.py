"""Sample sizes (power.py): the closed form, its inverse, uneven and several arms, and a simulated
experiment at the planned sample reaching the stated power with stats.compare's own test.

The modules are imported whole so that each test names the function it checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from clickhouse.experiments import power, stats

FIXED = stats.AnalysisConfig(bootstrap_resamples=0)


def test_two_equal_arms_follow_the_closed_form() -> None:
    # Lift variance s^2 / mu^2 (1 / n_v + (1 + mde)^2 / n_c) with n_c = n_v = N / 2 set to (mde / z)^2.
    variance, mean, mde = 0.21, 0.3, 0.1
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    expected = z**2 * variance * 2 * (1 + (1 + mde) ** 2) / (mean * mde) ** 2
    assert power.required_units(variance, mean, mde, 0.05, 0.8, [0.5, 0.5]) == math.ceil(expected)


def test_reachable_mde_inverts_required_units() -> None:
    for weights in ([0.5, 0.5], [0.8, 0.2], [1, 1, 1]):
        for mde in (0.02, 0.1, 0.5):
            units = power.required_units(3.0, 12.0, mde, 0.05, 0.8, weights)
            assert units is not None
            # The planned sample is the smallest that reaches the effect.
            reached = power.reachable_mde(3.0, 12.0, units, 0.05, 0.8, weights)
            short = power.reachable_mde(3.0, 12.0, units - 1, 0.05, 0.8, weights)
            assert reached is not None and short is not None and reached <= mde < short


def test_uneven_and_more_arms_need_more_units() -> None:
    even = power.required_units(1.0, 1.0, 0.05, 0.05, 0.8, [0.5, 0.5])
    uneven = power.required_units(1.0, 1.0, 0.05, 0.05, 0.8, [0.9, 0.1])
    three = power.required_units(1.0, 1.0, 0.05, 0.05, 0.8, [1, 1, 1])
    assert even is not None and uneven is not None and three is not None
    assert uneven > 2 * even and three > even
    # More power or a smaller alpha costs units; a larger effect saves them.
    assert power.required_units(1.0, 1.0, 0.05, 0.05, 0.9, [1, 1]) > even  # type: ignore[operator]
    assert power.required_units(1.0, 1.0, 0.05, 0.01, 0.8, [1, 1]) > even  # type: ignore[operator]
    assert power.required_units(1.0, 1.0, 0.10, 0.05, 0.8, [1, 1]) < even  # type: ignore[operator]


@pytest.mark.parametrize(
    ("variance", "mean", "weights"),
    [(0.0, 1.0, [1, 1]), (1.0, 0.0, [1, 1]), (math.nan, 1.0, [1, 1]), (1.0, 1.0, [1]), (1.0, 1.0, [1, 0])],
)
def test_no_variance_no_mean_or_no_second_arm_plans_nothing(variance: float, mean: float, weights: list[float]) -> None:
    assert power.required_units(variance, mean, 0.05, 0.05, 0.8, weights) is None
    assert power.reachable_mde(variance, mean, 10_000, 0.05, 0.8, weights) is None


def test_too_few_units_reach_no_effect() -> None:
    # With very few units even an infinite lift is not found with 80 % power.
    assert power.reachable_mde(100.0, 1.0, 10, 0.05, 0.8, [0.5, 0.5]) is None


def proportion(successes: int, n: int) -> stats.RatioEstimate:
    return stats.ratio_from_sums(n, successes, n, successes, n, successes)


def test_a_proportion_at_the_planned_sample_is_found_with_the_stated_power() -> None:
    rate, mde, target = 0.3, 0.1, 0.8
    units = power.required_units(rate * (1 - rate), rate, mde, 0.05, target, [0.5, 0.5])
    assert units is not None
    rng = np.random.default_rng(20)
    runs, per_arm = 400, units // 2
    control = rng.binomial(per_arm, rate, runs)
    variant = rng.binomial(per_arm, rate * (1 + mde), runs)
    found = sum(
        stats.compare(proportion(int(a), per_arm), proportion(int(b), per_arm), "a", "b", FIXED).significant
        for a, b in zip(control, variant, strict=True)
    )
    # 400 runs: the share's standard error is 2 %.
    assert abs(found / runs - target) <= 0.06, found


def test_a_mean_at_the_planned_sample_is_found_with_the_stated_power() -> None:
    mean, sd, mde, target = 10.0, 6.0, 0.08, 0.8
    units = power.required_units(sd**2, mean, mde, 0.05, target, [0.5, 0.5])
    assert units is not None
    rng = np.random.default_rng(21)
    runs, per_arm = 400, units // 2
    ones = np.ones(per_arm)
    found = 0
    for _ in range(runs):
        a = stats.ratio_estimate(rng.normal(mean, sd, per_arm), ones)
        b = stats.ratio_estimate(rng.normal(mean * (1 + mde), sd, per_arm), ones)
        found += stats.compare(a, b, "a", "b", FIXED).significant
    assert abs(found / runs - target) <= 0.06, found
