"""Simulated experiments (tests/helpers/experiment_simulation.py, seeded) through the analysis's
estimators: what CUPED buys at a pre/post correlation of 0.8, the false-positive rate of A/A tests
with and without it, and the guardrail harm test at the sample planning asks for.

Array level (no warehouse): regression.estimate_pair, stats.compare, stats.harm_check, power.required_units.
"""

from __future__ import annotations

import numpy as np
import pytest

from clickhouse.experiments import power, regression, stats
from tests.helpers.experiment_simulation import Kind, arms

CONFIG = stats.AnalysisConfig(bootstrap_resamples=0)
ALPHA = CONFIG.alpha


def both_ways(
    control: regression.UnitValues, variant: regression.UnitValues, kind: Kind
) -> tuple[stats.Comparison, stats.Comparison]:
    """(adjusted, unadjusted) comparisons of one simulated experiment."""
    adjusted = stats.compare(*regression.estimate_pair(control, variant, kind, adjust=True), "a", "b", CONFIG)
    plain = stats.compare(*regression.estimate_pair(control, variant, kind, adjust=False), "a", "b", CONFIG)
    return adjusted, plain


def width(c: stats.Comparison) -> float:
    assert c.lift_ci_low is not None and c.lift_ci_high is not None
    return c.lift_ci_high - c.lift_ci_low


@pytest.mark.parametrize(("kind", "seed"), [("proportion", 1), ("mean", 2), ("ratio", 3)])
def test_cuped_at_rho_0_8_narrows_the_interval_and_still_covers_the_effect(kind: Kind, seed: int) -> None:
    # Theory: the residual variance is 1 - rho^2, so the interval narrows by 1 - sqrt(1 - 0.64) = 40 %.
    rng = np.random.default_rng(seed)
    effect, runs = 0.05, 100
    narrowing, covered = [], 0
    for _ in range(runs):
        adjusted, plain = both_ways(*arms(rng, kind, 2000, rho=0.8, effect=effect), kind)
        assert adjusted.cuped is not None and adjusted.cuped.applied
        narrowing.append(1 - width(adjusted) / width(plain))
        covered += adjusted.lift_ci_low <= effect <= adjusted.lift_ci_high  # type: ignore[operator]
        standard_errors = adjusted.lift_standard_error / plain.lift_standard_error  # type: ignore[operator]
        assert adjusted.cuped.variance_reduction == pytest.approx(1 - standard_errors**2, rel=1e-9)
    print(f"{kind}: mean narrowing {np.mean(narrowing):.3f}, covered {covered}/{runs}")
    assert np.mean(narrowing) >= 0.35
    assert covered >= 90


@pytest.mark.parametrize(("kind", "seed"), [("proportion", 4), ("ratio", 5)])
def test_aa_false_positives_are_alpha_with_and_without_cuped(kind: Kind, seed: int) -> None:
    rng = np.random.default_rng(seed)
    runs = 600
    false_positives = {"cuped": 0, "plain": 0}
    for _ in range(runs):
        adjusted, plain = both_ways(*arms(rng, kind, 1000, rho=0.8), kind)
        false_positives["cuped"] += adjusted.significant
        false_positives["plain"] += plain.significant
    rates = {k: v / runs for k, v in false_positives.items()}
    print(f"{kind}: A/A false-positive rates {rates}")
    # 600 runs: the rate's standard error at 5 % is 0.9 %, so +-3 % is more than three of them.
    for rate in rates.values():
        assert abs(rate - ALPHA) <= 0.03


def per_unit_variance(values: regression.UnitValues) -> tuple[float, float]:
    """(mean, per-unit variance) of a pilot arm, as planning measures them from recent traffic."""
    estimate = stats.ratio_estimate(values.numerator, values.denominator)
    return estimate.value, estimate.variance * estimate.units


@pytest.mark.parametrize(("kind", "harmful", "seed"), [("proportion", "decrease", 6), ("ratio", "increase", 7)])
def test_a_guardrail_harmed_by_10_percent_is_flagged_at_the_planned_sample(kind: Kind, harmful: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mean, variance = per_unit_variance(arms(rng, kind, 20_000, rho=0.5)[0])
    units = power.required_units(variance, mean, 0.10, ALPHA, 0.8, [0.5, 0.5])
    assert units is not None
    harm = 0.10 if harmful == "increase" else -0.10
    # 300 runs each, read as rates: "80 in 100" and "8 in 100" then do not hang on a couple of runs.
    runs = 300
    flagged = {"harmed": 0, "unharmed": 0}
    for planted, label in ((harm, "harmed"), (0.0, "unharmed")):
        for _ in range(runs):
            control, variant = arms(rng, kind, units // 2, rho=0.5, effect=planted)
            c = stats.compare(*regression.estimate_pair(control, variant, kind, adjust=True), "a", "b", CONFIG)
            _, harmed = stats.harm_check(c, harmful, 0.0, ALPHA)  # type: ignore[arg-type]
            flagged[label] += harmed
    print(f"{kind} at {units} units: flagged {flagged} of {runs} each")
    assert flagged["harmed"] / runs >= 0.80
    assert flagged["unharmed"] / runs <= 0.08
