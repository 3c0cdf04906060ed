"""CUPED (regression.py) against GrowthBook's published gbstats vectors
(packages/stats/tests/frequentist/test_tests.py), and its fallbacks and bookkeeping on per-unit arrays.

The modules are imported whole so that each test names the function it checks.
"""

from __future__ import annotations

import numpy as np
import pytest

from clickhouse.experiments import regression, stats

GB = 1e-5
"""gbstats rounds its expected values to 5 decimals."""
FIXED = stats.AnalysisConfig(bootstrap_resamples=0)
SEQUENTIAL = stats.AnalysisConfig(bootstrap_resamples=0, sequential=True)


def mean_arm(n: int, post: tuple[float, float], pre: tuple[float, float], post_pre: float) -> regression.ArmMoments:
    """gbstats' RegressionAdjustedStatistic: (sum, sum_squares) of post and pre, and their sum of products."""
    return regression.ArmMoments.from_sums(n, [post[0], pre[0]], [[post[1], post_pre], [post_pre, pre[1]]])


def ratio_arm(
    n: int, sums: list[float], squares: list[float], products: dict[tuple[int, int], float]
) -> regression.ArmMoments:
    """gbstats' RegressionAdjustedRatioStatistic; components 0..3 = m_post, d_post, m_pre, d_pre."""
    matrix = np.diag(squares)
    for (i, j), value in products.items():
        matrix[i, j] = matrix[j, i] = value
    return regression.ArmMoments.from_sums(n, sums, matrix.tolist())


# gbstats' pair of RegressionAdjustedRatioStatistic, n = 100 per arm.
RATIO_CONTROL = ratio_arm(
    100,
    [485.112236689623, 679.9093275844917, 192.59138069991536, 290.1398399750233],
    [2715.484666118136, 4939.424001640236, 460.076026390857, 920.9461385038898],
    {
        (0, 2): 1113.6215759318352,
        (1, 3): 2130.9404074446747,
        (2, 3): 634.239482353647,
        (0, 1): 3602.146836776702,
        (0, 3): 1559.2878434944676,
        (1, 2): 1460.3181079276983,
    },
)
RATIO_VARIANT = ratio_arm(
    100,
    [514.7757826608777, 705.4090874383759, 206.94157227402536, 302.54389139107326],
    [2994.897482705013, 5291.36604146392, 514.2903702246757, 994.4506208125663],
    {
        (0, 2): 1237.0953021125997,
        (1, 3): 2292.081739775257,
        (2, 3): 698.4173425817908,
        (0, 1): 3918.1561431600717,
        (0, 3): 1701.0287270040265,
        (1, 2): 1604.0759503266522,
    },
)


def test_ratio_cuped_matches_gbstats_two_sided_ttest() -> None:
    # gbstats TestTwoSidedTTest.test_two_sided_ttest_test_runs_ratio_ra.
    pair = regression.adjusted_pair(RATIO_CONTROL, RATIO_VARIANT)
    assert pair is not None
    c = stats.compare(*pair, "a", "b", FIXED)
    assert c.relative_lift == pytest.approx(-0.0007, abs=GB)
    assert c.lift_standard_error == pytest.approx(0.00391, abs=GB)
    assert (c.lift_ci_low, c.lift_ci_high) == pytest.approx((-0.00841, 0.00700), abs=GB)
    assert c.p_value == pytest.approx(0.85771, abs=GB)
    assert c.cuped is not None and c.cuped.applied and c.cuped.variance_reduction is not None
    assert c.cuped.variance_reduction > 0.9


def test_ratio_cuped_matches_gbstats_sequential() -> None:
    # gbstats TestSequentialTTest.test_sequential_test_runs_ratio_ra: default N* = 5000.
    pair = regression.adjusted_pair(RATIO_CONTROL, RATIO_VARIANT)
    assert pair is not None
    c = stats.compare(*pair, "a", "b", SEQUENTIAL)
    assert c.relative_lift == pytest.approx(-0.0007, abs=GB)
    assert c.lift_standard_error == pytest.approx(0.00391, abs=GB)
    assert (c.lift_ci_low, c.lift_ci_high) == pytest.approx((-0.02063, 0.01923), abs=GB)
    assert c.p_value == pytest.approx(1.0)


def test_mean_cuped_matches_gbstats_sequential() -> None:
    # gbstats TestSequentialTTest.test_sequential_test_runs_ra: post-pre sum of products 1.
    control = mean_arm(3000, (1396.87, 52377.9767), (16.87, 527.9767), 1)
    variant = mean_arm(3461, (2422.7, 134698.29), (22.7, 1348.29), 1)
    pair = regression.adjusted_pair(control, variant)
    assert pair is not None
    c = stats.compare(*pair, "a", "b", SEQUENTIAL)
    assert c.relative_lift == pytest.approx(0.50338, abs=GB)
    assert c.lift_standard_error == pytest.approx(0.33341, abs=GB)
    assert (c.lift_ci_low, c.lift_ci_high) == pytest.approx((-0.50969, 1.51646), abs=GB)
    assert c.p_value == pytest.approx(1.0)


# --- per-unit arrays ---------------------------------------------------------------------------


def correlated_arm(rng: np.random.Generator, n: int, effect: float = 0.0) -> regression.UnitValues:
    pre = rng.normal(10, 2, n)
    post = 0.8 * pre + rng.normal(2, 1.2, n) + effect
    return regression.UnitValues(post, np.ones(n), pre, np.ones(n))


def test_mean_theta_is_the_pooled_least_squares_slope() -> None:
    rng = np.random.default_rng(1)
    control, variant = correlated_arm(rng, 800), correlated_arm(rng, 900, effect=0.5)
    a, b = regression.estimate_pair(control, variant, "mean", adjust=True)
    assert control.pre_numerator is not None and variant.pre_numerator is not None
    pre = np.r_[control.pre_numerator, variant.pre_numerator]
    post = np.r_[control.numerator, variant.numerator]
    slope = np.polyfit(pre, post, 1)[0]
    assert a.theta == b.theta == pytest.approx(slope, rel=1e-12)
    assert a.value == pytest.approx(control.numerator.mean() - slope * control.pre_numerator.mean())
    assert a.unadjusted_value == pytest.approx(control.numerator.mean())


def test_arrays_and_sums_give_the_same_estimates() -> None:
    rng = np.random.default_rng(2)
    n = 500
    d_pre = rng.poisson(2, n).astype(float)
    m_pre = d_pre * rng.lognormal(3, 0.4, n)
    d_post = rng.poisson(2, n) + 1.0
    m_post = d_post * rng.lognormal(3, 0.4, n) + 0.3 * m_pre
    components = [m_post, d_post, m_pre, d_pre]
    data = np.vstack(components)
    from_units = regression.ArmMoments.from_units(components, 0)
    from_sums = regression.ArmMoments.from_sums(n, data.sum(axis=1).tolist(), (data @ data.T).tolist())
    assert from_sums.means == pytest.approx(from_units.means, rel=1e-12)
    assert from_sums.covariance == pytest.approx(from_units.covariance, rel=1e-9)


def test_ratio_unadjusted_part_is_the_plain_delta_method_ratio() -> None:
    rng = np.random.default_rng(3)
    arms = []
    for _ in range(2):
        rate = rng.lognormal(2, 0.3, 600)  # each unit's own speed, seen in both periods
        d_pre = rng.poisson(3, 600).astype(float)
        d_post = rng.poisson(3, 600) + 1.0
        arms.append(regression.UnitValues(d_post * rate * rng.lognormal(0, 0.2, 600), d_post, d_pre * rate, d_pre))
    a, b = regression.estimate_pair(arms[0], arms[1], "ratio", adjust=True)
    plain = stats.ratio_estimate(arms[0].numerator, arms[0].denominator)
    assert a.theta is not None and a.theta == b.theta
    assert a.unadjusted_value == pytest.approx(plain.value, rel=1e-12)
    assert a.unadjusted_variance == pytest.approx(plain.variance, rel=1e-9)
    assert a.value != plain.value


@pytest.mark.parametrize("kind", ["mean", "ratio"])
def test_no_adjustment_asked_or_no_pre_arrays_gives_the_plain_estimates(kind: regression.MetricKind) -> None:
    rng = np.random.default_rng(4)
    control, variant = correlated_arm(rng, 300), correlated_arm(rng, 300)
    plain = stats.ratio_estimate(control.numerator, control.denominator)
    without_pre = regression.UnitValues(control.numerator, control.denominator)
    for adjust, first in ((False, control), (True, without_pre)):
        a, _ = regression.estimate_pair(first, variant, kind, adjust=adjust)
        assert a == plain
        assert stats.compare(a, plain, "a", "b", FIXED).cuped is None


@pytest.mark.parametrize("kind", ["proportion", "ratio"])
def test_a_pre_period_without_data_falls_back_and_says_so(kind: regression.MetricKind) -> None:
    rng = np.random.default_rng(5)
    arms = [
        regression.UnitValues(rng.binomial(1, p, 400).astype(float), np.ones(400), np.zeros(400), np.zeros(400))
        for p in (0.2, 0.3)
    ]
    a, b = regression.estimate_pair(arms[0], arms[1], kind, adjust=True)
    assert a.theta is None and a.value == stats.ratio_estimate(arms[0].numerator, arms[0].denominator).value
    c = stats.compare(a, b, "a", "b", FIXED, lookback_days=14)
    plain = stats.compare(stats.unadjusted(a), stats.unadjusted(b), "a", "b", FIXED)
    assert c.cuped is not None and not c.cuped.applied and c.cuped.theta is None
    assert c.cuped.units_with_pre_period == 0 and c.cuped.lookback_days == 14
    assert c.cuped.variance_reduction is None
    assert (c.relative_lift, c.p_value, c.lift_ci_low) == (plain.relative_lift, plain.p_value, plain.lift_ci_low)
    assert c.cuped.unadjusted_relative_lift == pytest.approx(c.relative_lift)


def test_proportion_cuped_reports_its_reduction_and_the_unadjusted_lift() -> None:
    rng = np.random.default_rng(6)
    arms = []
    for rate in (0.30, 0.33):
        pre = rng.binomial(1, 0.3, 5000).astype(float)
        # Units that converted before convert again far more often: a strong covariate.
        post = rng.binomial(1, np.where(pre == 1, rate * 2.2, rate * 0.5)).astype(float)
        arms.append(regression.UnitValues(post, np.ones(5000), pre))
    a, b = regression.estimate_pair(arms[0], arms[1], "proportion", adjust=True)
    c = stats.compare(a, b, "a", "b", FIXED, lookback_days=14)
    plain = stats.compare(stats.unadjusted(a), stats.unadjusted(b), "a", "b", FIXED)
    assert c.cuped is not None and c.cuped.applied and c.cuped.theta == a.theta
    assert c.cuped.units_with_pre_period == int(arms[0].pre_numerator.sum() + arms[1].pre_numerator.sum())  # type: ignore[union-attr]
    assert c.cuped.unadjusted_relative_lift == pytest.approx(plain.relative_lift)
    assert (c.cuped.unadjusted_lift_ci_low, c.cuped.unadjusted_lift_ci_high) == pytest.approx(
        (plain.lift_ci_low, plain.lift_ci_high)
    )
    reduction = 1 - (c.lift_standard_error / plain.lift_standard_error) ** 2  # type: ignore[operator]
    assert c.cuped.variance_reduction == pytest.approx(reduction)
    assert 0.05 < reduction < 0.6
    # The arms' values stay as measured; the lift is that of the adjusted means.
    assert (c.control_value, c.variant_value) == (plain.control_value, plain.variant_value)
    assert c.relative_lift == pytest.approx((b.value - a.value) / a.unadjusted_value)  # type: ignore[operator]
