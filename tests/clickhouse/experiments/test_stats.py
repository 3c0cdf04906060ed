"""The estimators and tests of stats.py against GrowthBook's published gbstats test vectors
(packages/stats/tests/frequentist/test_tests.py), hand-computed multiple-testing adjustments, and
ClickHouse's own quantile functions on chdb.

The module is imported whole so that each test names the function it checks.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from clickhouse.experiments import stats

FIXED = stats.AnalysisConfig(bootstrap_resamples=0)
GB = 1e-5
"""gbstats rounds its expected values to 5 decimals."""


def mean_metric(n: int, total: float, sum_squares: float) -> stats.RatioEstimate:
    """A unit-level mean (denominator 1 per unit) from gbstats' SampleMeanStatistic inputs."""
    return stats.ratio_from_sums(n, total, float(n), sum_squares, float(n), total)


def proportion(successes: int, n: int) -> stats.RatioEstimate:
    numerator = np.r_[np.ones(successes), np.zeros(n - successes)]
    return stats.ratio_estimate(numerator, np.ones(n))


# --- GrowthBook's vectors ----------------------------------------------------------------------


def test_mean_metric_relative_lift_matches_gbstats_two_sided_ttest() -> None:
    # gbstats TestTwoSidedTTest.test_two_sided_ttest: relative lift, Welch t.
    control = mean_metric(3407, 1396.87, 52377.9767)
    variant = mean_metric(3461, 2422.7, 134698.29)
    c = stats.compare(control, variant, "a", "b", FIXED)
    assert c.relative_lift == pytest.approx(0.70732, abs=GB)
    assert c.lift_standard_error == pytest.approx(0.37879, abs=GB)
    assert (c.lift_ci_low, c.lift_ci_high) == pytest.approx((-0.03526, 1.44989), abs=GB)
    assert c.p_value == pytest.approx(0.06191, abs=GB)
    assert not c.significant


def test_mean_metric_absolute_difference_matches_gbstats() -> None:
    # gbstats test_two_sided_ttest_absolute: the difference has its own p-value from its own variance.
    control = mean_metric(3407, 1396.87, 52377.9767)
    variant = mean_metric(3461, 2422.7, 134698.29)
    c = stats.compare(control, variant, "a", "b", FIXED)
    assert c.difference == pytest.approx(0.29, abs=GB)
    assert (c.ci_low, c.ci_high) == pytest.approx((0.04538, 0.53462), abs=GB)
    assert c.difference_p_value == pytest.approx(0.02016, abs=GB)


def test_mean_metric_sequential_matches_gbstats_with_tuning_1000() -> None:
    # gbstats TestSequentialTTest.test_sequential_test_runs: N* = 1000.
    control = mean_metric(3000, 1396.87, 52377.9767)
    variant = mean_metric(3461, 2422.7, 134698.29)
    config = stats.AnalysisConfig(bootstrap_resamples=0, sequential=True, sequential_tuning_n=1000)
    c = stats.compare(control, variant, "a", "b", config)
    assert c.relative_lift == pytest.approx(0.50336, abs=GB)
    assert c.lift_standard_error == pytest.approx(0.33341, abs=GB)
    assert c.decision == "sequential"
    assert (c.lift_ci_low, c.lift_ci_high) == pytest.approx((-0.55844, 1.56516), abs=GB)
    assert c.p_value == pytest.approx(1.0)
    assert not c.significant


def test_proportions_sequential_match_gbstats() -> None:
    # gbstats test_sequential_test_runs_prop: 1396/3000 vs 2422/3461, default N* = 5000.
    # gbstats takes p(1-p) as a proportion's variance, the ratio estimator the n-1 sample variance:
    # the intervals agree to 2e-4 relative (the n/(n-1) factor on 3,000 units), not to 5 decimals.
    config = stats.AnalysisConfig(bootstrap_resamples=0, sequential=True)
    c = stats.compare(proportion(1396, 3000), proportion(2422, 3461), "a", "b", config)
    assert c.relative_lift == pytest.approx(0.50386, abs=GB)
    assert c.lift_standard_error == pytest.approx(0.03386, rel=2e-4)
    assert (c.lift_ci_low, c.lift_ci_high) == pytest.approx((0.40098, 0.60675), rel=2e-4)
    assert c.significant and c.p_value is not None and c.p_value < 1e-6


def test_ratio_estimate_reduces_to_its_sufficient_statistics() -> None:
    rng = np.random.default_rng(4)
    y = 1.0 + rng.poisson(2, 500)
    x = y * rng.lognormal(3, 0.5, 500)
    direct = stats.ratio_estimate(x, y)
    sums = stats.ratio_from_sums(500, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())
    assert sums.value == pytest.approx(direct.value, rel=1e-12)
    assert sums.variance == pytest.approx(direct.variance, rel=1e-9)


# --- one variance, one answer ------------------------------------------------------------------


def test_20_of_400_vs_36_of_400_is_not_significant_with_an_interval_covering_zero() -> None:
    # The example: the absolute test gave p = 0.026 and "significant" next to a lift
    # interval of [-15 %, +175 %].
    c = stats.compare(proportion(20, 400), proportion(36, 400), "control", "treatment", FIXED)
    assert c.relative_lift == pytest.approx(0.8)
    assert c.lift_ci_low is not None and c.lift_ci_high is not None
    assert c.lift_ci_low < 0 < c.lift_ci_high
    assert c.p_value is not None and c.p_value > 0.05
    assert not c.significant
    # The absolute difference keeps its own, self-consistent test.
    assert c.difference_p_value == pytest.approx(0.026, abs=0.002)
    assert c.ci_low is not None and c.ci_low > 0


@pytest.mark.parametrize("sequential", [False, True])
def test_significant_exactly_when_the_lift_interval_excludes_zero(sequential: bool) -> None:
    rng = np.random.default_rng(8)
    config = stats.AnalysisConfig(bootstrap_resamples=0, sequential=sequential, sequential_tuning_n=500)
    seen = {True: 0, False: 0}
    for _ in range(400):
        n_a, n_b = rng.integers(20, 2000, size=2)
        p_a, p_b = rng.uniform(0.02, 0.5), rng.uniform(0.02, 0.5)
        a = stats.ratio_estimate(rng.binomial(1, p_a, n_a).astype(float), np.ones(n_a))
        b = stats.ratio_estimate(rng.binomial(1, p_b, n_b).astype(float), np.ones(n_b))
        c = stats.compare(a, b, "a", "b", config)
        if c.p_value is None or c.lift_ci_low is None or c.lift_ci_high is None:
            continue
        excludes_zero = c.lift_ci_low > 0 or c.lift_ci_high < 0
        assert c.significant is excludes_zero is (c.p_value < config.alpha), c
        assert c.ci_low is not None and c.ci_high is not None and c.difference_p_value is not None
        assert (c.ci_low > 0 or c.ci_high < 0) is (c.difference_p_value < config.alpha), c
        seen[c.significant] += 1
    assert min(seen.values()) > 20, seen


# --- sequential mode: which numbers are which --------------------------------------------------


def test_sequential_mode_puts_the_deciding_numbers_at_the_top_and_keeps_fixed_horizon_apart() -> None:
    a, b = proportion(100, 1000), proportion(136, 1000)
    fixed = stats.compare(a, b, "a", "b", FIXED)
    assert fixed.decision == "fixed_horizon" and fixed.fixed_horizon is None and fixed.sequential is None

    config = stats.AnalysisConfig(bootstrap_resamples=0, sequential=True)
    seq = stats.compare(a, b, "a", "b", config)
    assert seq.decision == "sequential" and seq.sequential is not None and seq.fixed_horizon is not None
    # What a reader sees first is what decided `significant`.
    assert (seq.p_value, seq.ci_low, seq.ci_high, seq.lift_ci_low, seq.lift_ci_high) == (
        seq.sequential.p_value,
        seq.sequential.ci_low,
        seq.sequential.ci_high,
        seq.sequential.lift_ci_low,
        seq.sequential.lift_ci_high,
    )
    # The fixed-horizon numbers are kept, labelled, and are those of a fixed-horizon analysis.
    assert seq.fixed_horizon.p_value == fixed.p_value
    assert (seq.fixed_horizon.lift_ci_low, seq.fixed_horizon.lift_ci_high) == (fixed.lift_ci_low, fixed.lift_ci_high)
    assert "fixed horizon" in seq.fixed_horizon.label
    # Fixed horizon would call it (p < 0.05); the confidence sequence does not, and neither does the result.
    assert fixed.significant and not seq.significant
    assert seq.p_value is not None and seq.p_value > config.alpha


@pytest.mark.parametrize("sequential", [False, True])
def test_the_lift_interval_never_goes_below_minus_100_percent(sequential: bool) -> None:
    # 10/20 vs 1/20: lift -90 %, and the symmetric interval's lower end falls near -111 %.
    config = stats.AnalysisConfig(bootstrap_resamples=0, sequential=sequential)
    c = stats.compare(proportion(10, 20), proportion(1, 20), "a", "b", config)
    assert c.relative_lift == pytest.approx(-0.9)
    assert c.lift_standard_error is not None
    assert c.lift_ci_low == -1.0 and c.lift_ci_clamped
    assert c.lift_ci_high is not None and c.significant is (c.lift_ci_high < 0)
    unclamped = stats.compare(proportion(400, 1000), proportion(300, 1000), "a", "b", config)
    assert unclamped.lift_ci_low is not None and unclamped.lift_ci_low > -1.0 and not unclamped.lift_ci_clamped


# --- guardrails: the one-sided harm test -------------------------------------------------------


def test_harm_check_is_the_one_sided_welch_t_of_the_lift_beyond_the_threshold() -> None:
    c = stats.compare(proportion(1000, 10000), proportion(1300, 10000), "a", "b", FIXED)
    assert c.relative_lift is not None and c.lift_standard_error is not None and c.lift_dof is not None
    for threshold in (0.0, 0.1, 0.3):
        p_value, harmed = stats.harm_check(c, "increase", threshold, 0.05)
        t = (c.relative_lift - threshold) / c.lift_standard_error
        assert p_value == pytest.approx(float(scipy_stats.t.sf(t, c.lift_dof)))
        assert harmed is (p_value is not None and p_value < 0.05)
    # +30 % (standard error 4.5 %) is harm beyond 0 and 10 %, not beyond 30 %; moving the other way never is.
    assert [stats.harm_check(c, "increase", x, 0.05)[1] for x in (0.0, 0.1, 0.3)] == [True, True, False]
    p_value, harmed = stats.harm_check(c, "decrease", 0.0, 0.05)
    assert p_value is not None and p_value > 0.99 and not harmed


def test_harm_check_at_threshold_zero_agrees_with_the_one_sided_interval() -> None:
    # One-sided at alpha is the two-sided interval at 2 alpha: harmed exactly when its lower end is above 0.
    rng = np.random.default_rng(11)
    for _ in range(200):
        a = proportion(int(rng.integers(50, 150)), 1000)
        b = proportion(int(rng.integers(50, 150)), 1000)
        wide = stats.compare(a, b, "a", "b", stats.AnalysisConfig(bootstrap_resamples=0, alpha=0.10))
        _, harmed = stats.harm_check(stats.compare(a, b, "a", "b", FIXED), "increase", 0.0, 0.05)
        assert harmed is (wide.lift_ci_low is not None and wide.lift_ci_low > 0)
        _, harmed_down = stats.harm_check(stats.compare(a, b, "a", "b", FIXED), "decrease", 0.0, 0.05)
        assert harmed_down is (wide.lift_ci_high is not None and wide.lift_ci_high < 0)


def test_harm_check_in_sequential_mode_reads_the_confidence_sequence() -> None:
    config = stats.AnalysisConfig(bootstrap_resamples=0, sequential=True, sequential_tuning_n=2000)
    rng = np.random.default_rng(12)
    seen = {True: 0, False: 0}
    for _ in range(200):
        a = proportion(int(rng.integers(80, 120)), 2000)
        b = proportion(int(rng.integers(60, 140)), 2000)
        c = stats.compare(a, b, "a", "b", config)
        assert c.sequential is not None and c.sequential.units == 4000 and c.sequential.tuning_n == 2000
        for threshold in (0.0, 0.05):
            p_value, harmed = stats.harm_check(c, "decrease", threshold, 0.05)
            # The sequence's upper end (the harmful side) below -threshold: harmed.
            assert c.lift_ci_high is not None and harmed is (c.lift_ci_high < -threshold)
            assert harmed is (p_value is not None and p_value < 0.05)
            seen[harmed] += 1
    assert min(seen.values()) > 20, seen


def test_harm_check_without_a_standard_error_is_not_harmed() -> None:
    c = stats.compare(proportion(0, 100), proportion(5, 100), "a", "b", FIXED)
    assert stats.harm_check(c, "increase", 0.0, 0.05) == (None, False)


# --- multiple testing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p_values", "holm", "bh"),
    [
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02], [0.02, 0.04, 0.04, 0.02]),
        ([0.01, None, 0.04, 0.03, 0.005], [0.03, None, 0.06, 0.06, 0.02], [0.02, None, 0.04, 0.04, 0.02]),
        ([0.5, 0.6], [1.0, 1.0], [0.6, 0.6]),
        ([0.01, 0.01], [0.02, 0.02], [0.01, 0.01]),
        ([0.2], [0.2], [0.2]),
        ([None, None], [None, None], [None, None]),
        ([], [], []),
    ],
)
def test_adjust_p_values_by_hand(
    p_values: list[float | None], holm: list[float | None], bh: list[float | None]
) -> None:
    assert stats.adjust_p_values(p_values, "holm") == pytest.approx(holm)
    assert stats.adjust_p_values(p_values, "benjamini_hochberg") == pytest.approx(bh)


def test_adjusted_comparisons_decide_significance_on_the_adjusted_p() -> None:
    control = proportion(100, 1000)
    family = [stats.compare(control, proportion(k, 1000), "a", f"b{k}", FIXED) for k in (136, 104, 98, 102, 100, 105)]
    raw = [c.p_value for c in family]
    first_raw = raw[0]
    assert first_raw is not None and 0.01 < first_raw < 0.05 and family[0].significant
    adjusted = stats.adjust_comparisons(family, "holm", 0.05)
    assert [c.p_value for c in adjusted] == raw
    assert [c.p_value_adjusted for c in adjusted] == pytest.approx(stats.adjust_p_values(raw, "holm"))
    first = adjusted[0]
    assert first.p_value_adjusted is not None and first.p_value_adjusted > 0.05 and not first.significant
    # Adjusted significance implies raw significance: never significant with an interval covering zero.
    for c in adjusted:
        assert not c.significant or (c.lift_ci_low is not None and c.lift_ci_low > 0) or (c.lift_ci_high or 0) < 0


# --- quantiles ---------------------------------------------------------------------------------


CLICKHOUSE_QUANTILES = (
    "quantilesExactWeighted(0.5, 0.9, 0.99)(x, 1)",
    "quantilesExactLow(0.5, 0.9, 0.99)(x)",
)
RUN_SQL = "import sys, chdb; print(chdb.query(sys.stdin.read(), 'TabSeparated'))"


def clickhouse_quantiles(values: np.ndarray) -> list[list[float]]:
    """Each of CLICKHOUSE_QUANTILES over ``values``, on chdb. In a process of its own: chdb serves
    one data path per process, and the warehouse tests of this process may own it."""
    listed = ",".join(repr(float(v)) for v in values)
    sql = f"SELECT {', '.join(CLICKHOUSE_QUANTILES)} FROM (SELECT arrayJoin([{listed}]) AS x)"
    done = subprocess.run([sys.executable, "-c", RUN_SQL], input=sql, capture_output=True, text=True, check=True)
    return [[float(v) for v in column.strip("[]").split(",")] for column in done.stdout.strip().split("\t")]


@pytest.mark.parametrize("n", [10, 11, 20, 100, 101, 999, 1000])
def test_weighted_quantiles_are_clickhouse_inverted_cdf(n: int) -> None:
    """The lower (inverted-CDF) quantile: ClickHouse's ``quantileExactWeighted(q)(x, 1)`` at every
    level; ``quantileExactLow`` agrees at 0.5 only (above it takes index floor(q·n), one higher
    whenever q·n is a whole number)."""
    rng = np.random.default_rng(n)
    # Three tied values low down, distinct ones elsewhere (repr keeps each float exact in the SQL).
    values = np.sort(np.r_[rng.lognormal(3, 1, n - 3), [5.0, 5.0, 5.0]])
    levels = (0.5, 0.9, 0.99)
    ours = stats.weighted_quantiles(values, np.ones(n), levels).tolist()
    exact_weighted, exact_low = clickhouse_quantiles(values)
    assert ours == exact_weighted
    assert ours == [float(np.quantile(values, q, method="inverted_cdf")) for q in levels]
    assert ours[0] == exact_low[0]
    if n % 10 == 0:
        # 0.9 n is whole: quantileExactLow reads one value higher than the inverted CDF.
        assert exact_low[1] == values[int(0.9 * n)] != ours[1]
