"""The Bayesian view (bayesian.py) against GrowthBook's published gbstats vectors
(packages/stats/tests/bayesian/test_tests.py, EffectBayesianABTest), and its directions and edges.

The modules are imported whole so that each test names the function it checks.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from clickhouse.experiments import bayesian, regression, stats

GB = 1e-5
"""gbstats rounds its expected values to 5 decimals."""
FLAT = bayesian.Prior()


def gb_proportion(successes: int, n: int) -> stats.RatioEstimate:
    """gbstats' ProportionStatistic: variance p (1 - p) / n (the population variance)."""
    p = successes / n
    return stats.RatioEstimate(n, successes, n, p, p * (1 - p) / n)


def gb_mean(n: int, total: float, sum_squares: float) -> stats.RatioEstimate:
    """gbstats' SampleMeanStatistic."""
    return stats.ratio_from_sums(n, total, float(n), sum_squares, float(n), total)


def posterior_sd(b: stats.BayesianComparison, alpha: float = 0.05) -> float:
    assert b.lift_ci_low is not None and b.lift_ci_high is not None
    return (b.lift_ci_high - b.lift_ci_low) / (2 * float(scipy_stats.norm.ppf(1 - alpha / 2)))


def test_proportions_flat_prior_match_gbstats() -> None:
    # gbstats TestBinom.test_bayesian_binomial_ab_test: 49/100 vs 51/100, default (flat) prior.
    b = bayesian.bayesian_compare(gb_proportion(49, 100), gb_proportion(51, 100), FLAT, "increase", 0.05)
    assert b.lift_mean == pytest.approx(0.04082, abs=GB)
    assert (b.lift_ci_low, b.lift_ci_high) == pytest.approx((-0.24779, 0.32943), abs=GB)
    assert posterior_sd(b) == pytest.approx(0.14725, abs=GB)
    assert b.chance_to_beat_control == pytest.approx(0.60918, abs=GB)
    # gbstats' risk = [keeping the control, shipping the variant].
    assert (b.control_expected_loss, b.expected_loss) == pytest.approx((0.0814, 0.04058), abs=GB)
    assert b.prior.startswith("flat (improper) prior on the relative lift")


def test_means_flat_prior_match_gbstats() -> None:
    # gbstats TestNorm.test_bayesian_gaussian_ab_test.
    b = bayesian.bayesian_compare(gb_mean(10, 100, 1002.25), gb_mean(10, 105, 1111.5), FLAT, "increase", 0.05)
    assert b.lift_mean == pytest.approx(0.05, abs=GB)
    assert (b.lift_ci_low, b.lift_ci_high) == pytest.approx((-0.02, 0.12), abs=GB)
    assert posterior_sd(b) == pytest.approx(0.03572, abs=GB)
    assert b.chance_to_beat_control == pytest.approx(0.91923, abs=GB)
    assert (b.control_expected_loss, b.expected_loss) == pytest.approx((0.05131, 0.00131), abs=GB)


def test_means_informative_prior_match_gbstats() -> None:
    # gbstats TestNorm.test_bayesian_gaussian_ab_test_informative: prior mean 0.1, variance 0.1, proper.
    prior = bayesian.Prior(mean=0.1, stddev=0.1**0.5, proper=True)
    b = bayesian.bayesian_compare(gb_mean(10, 100, 1002.25), gb_mean(10, 105, 1111.5), prior, "increase", 0.05)
    assert b.lift_mean == pytest.approx(0.05063, abs=GB)
    assert (b.lift_ci_low, b.lift_ci_high) == pytest.approx((-0.01893, 0.12019), abs=GB)
    assert posterior_sd(b) == pytest.approx(0.03549, abs=GB)
    assert b.chance_to_beat_control == pytest.approx(0.92315, abs=GB)
    assert (b.control_expected_loss, b.expected_loss) == pytest.approx((0.05186, 0.00123), abs=GB)
    assert b.prior == "Gaussian prior on the relative lift: mean +10.0%, standard deviation 31.6%"


def test_a_metric_that_should_decrease_mirrors_chance_and_losses() -> None:
    # gbstats' inverse metrics: chance to win is P(lift < 0) and the two risks swap.
    control, variant = gb_mean(10, 100, 1002.25), gb_mean(10, 105, 1111.5)
    up = bayesian.bayesian_compare(control, variant, FLAT, "increase", 0.05)
    down = bayesian.bayesian_compare(control, variant, FLAT, "decrease", 0.05)
    assert up.chance_to_beat_control is not None and down.chance_to_beat_control is not None
    assert down.chance_to_beat_control == pytest.approx(1 - up.chance_to_beat_control)
    assert (down.expected_loss, down.control_expected_loss) == (up.control_expected_loss, up.expected_loss)
    assert (down.lift_mean, down.lift_ci_low, down.lift_ci_high) == (up.lift_mean, up.lift_ci_low, up.lift_ci_high)


def test_flat_prior_reads_the_cuped_lift_and_its_standard_error() -> None:
    rng = np.random.default_rng(7)
    arms = []
    for effect in (0.0, 0.4):
        pre = rng.normal(10, 2, 2000)
        arms.append(regression.UnitValues(0.8 * pre + rng.normal(2, 1.2, 2000) + effect, np.ones(2000), pre))
    a, b = regression.estimate_pair(arms[0], arms[1], "mean", adjust=True)
    assert a.theta is not None
    c = stats.compare(a, b, "a", "b", stats.AnalysisConfig(bootstrap_resamples=0))
    view = bayesian.bayesian_compare(a, b, FLAT, "increase", 0.05)
    assert view.lift_mean == pytest.approx(c.relative_lift)
    assert posterior_sd(view) == pytest.approx(c.lift_standard_error)
    assert view.chance_to_beat_control is not None and view.chance_to_beat_control > 0.999


def test_a_proper_prior_pulls_the_lift_towards_its_mean() -> None:
    control, variant = gb_proportion(100, 1000), gb_proportion(130, 1000)
    flat = bayesian.bayesian_compare(control, variant, FLAT, "increase", 0.05)
    sceptical = bayesian.bayesian_compare(control, variant, bayesian.Prior(0.0, 0.05, True), "increase", 0.05)
    assert flat.lift_mean is not None and sceptical.lift_mean is not None
    assert 0 < sceptical.lift_mean < flat.lift_mean
    assert posterior_sd(sceptical) < posterior_sd(flat)


def test_no_variance_or_no_control_value_gives_an_empty_view() -> None:
    for control, variant in ((gb_proportion(0, 100), gb_proportion(5, 100)), (gb_mean(1, 3, 9), gb_mean(1, 4, 16))):
        b = bayesian.bayesian_compare(control, variant, FLAT, "increase", 0.05)
        assert (b.chance_to_beat_control, b.expected_loss, b.lift_mean) == (None, None, None)
        assert b.prior


def test_prior_from_the_analysis_config() -> None:
    config = stats.AnalysisConfig(prior_mean=0.02, prior_stddev=0.1, proper_prior=True)
    assert bayesian.Prior.from_config(config) == bayesian.Prior(0.02, 0.1, True)
    assert bayesian.Prior.from_config(stats.AnalysisConfig()) == bayesian.Prior(0.0, 0.3, False)
