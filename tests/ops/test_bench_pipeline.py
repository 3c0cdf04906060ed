"""The whole-pipeline benchmark's search: which rate it tries next, when it stops, what it reports, and
what counts as a passing trial. No service runs here; the trials are given as outcomes."""

from __future__ import annotations

import math
from typing import Any

from ops.bench.pipeline import Search, max_sustained, next_rate, trial_passed

SEARCH = Search(start_rate=2_000, factor=1.5, max_rate=200_000, min_rate=100, bisect_steps=2)


def search_with(capacity: float, search: Search = SEARCH) -> list[tuple[float, bool]]:
    """Every trial the search runs against a pipeline that passes exactly the rates up to ``capacity``."""
    outcomes: list[tuple[float, bool]] = []
    while (rate := next_rate(outcomes, search)) is not None:
        outcomes.append((rate, rate <= capacity))
        assert len(outcomes) < 50, "the search does not end"
    return outcomes


def test_rates_rise_by_the_factor_until_a_fail_then_bisect_between_last_pass_and_first_fail() -> None:
    outcomes = search_with(4_800)
    rates = [rate for rate, _ in outcomes]
    assert rates[:3] == [2_000, 3_000, 4_500]
    assert rates[3] == 6_750 and not outcomes[3][1]
    # Geometric midpoints: between 4,500 (pass) and 6,750 (fail), then the half that holds the answer.
    assert rates[4] == round(math.sqrt(4_500 * 6_750))
    assert rates[5] == round(math.sqrt(4_500 * rates[4]))
    assert len(outcomes) == 6
    assert not any(passed for _, passed in outcomes[3:])
    assert max_sustained(outcomes) == 4_500


def test_the_answer_is_the_highest_pass_once_bisection_finds_one() -> None:
    outcomes = search_with(6_000)
    middle = round(math.sqrt(4_500 * 6_750))
    assert (middle, True) in outcomes
    assert max_sustained(outcomes) == max(rate for rate, passed in outcomes if passed)
    assert 4_500 < max_sustained(outcomes) <= 6_000  # type: ignore[operator]


def test_a_first_fail_makes_the_search_go_down_until_a_pass() -> None:
    # The code before a speed-up may not sustain the start rate: the search still brackets its answer.
    outcomes = search_with(1_000)
    rates = [rate for rate, _ in outcomes]
    assert rates[:3] == [2_000, 1_333, 889]
    assert outcomes[2][1] and not outcomes[1][1]
    assert len(outcomes) == 3 + SEARCH.bisect_steps
    assert all(889 < rate < 1_333 for rate in rates[3:])
    assert 889 <= max_sustained(outcomes) <= 1_000  # type: ignore[operator]


def test_nothing_passing_down_to_the_min_rate_ends_without_an_answer() -> None:
    outcomes = search_with(10, Search(start_rate=2_000, factor=2, min_rate=500))
    assert [rate for rate, _ in outcomes] == [2_000, 1_000, 500]
    assert max_sustained(outcomes) is None


def test_a_pipeline_faster_than_max_rate_stops_at_it() -> None:
    outcomes = search_with(1e9, Search(start_rate=2_000, factor=1.5, max_rate=5_000))
    assert [rate for rate, _ in outcomes] == [2_000, 3_000, 4_500, 5_000]
    assert max_sustained(outcomes) == 5_000


def test_zero_bisect_steps_stops_at_the_first_fail() -> None:
    outcomes = search_with(3_500, Search(start_rate=2_000, factor=1.5, bisect_steps=0))
    assert [rate for rate, _ in outcomes] == [2_000, 3_000, 4_500]
    assert max_sustained(outcomes) == 3_000


def test_bisection_stops_when_pass_and_fail_are_a_step_apart() -> None:
    assert next_rate([(100, True), (101, False)], Search(start_rate=100, bisect_steps=5)) is None


def test_a_pass_above_a_fail_is_noise_not_the_answer() -> None:
    assert max_sustained([(2_000, True), (3_000, False), (2_500, False), (4_000, True)]) == 2_000


def figures(**changes: Any) -> dict[str, Any]:
    passing = {
        "rate": 2_000.0,
        "ok": True,
        "freshness_p99_ms": 1_500.0,
        "not_accepted": 0,
        "accepted_per_s": 1_990.0,
    }
    return {**passing, **changes}


def test_a_trial_passes_only_complete_fresh_and_at_the_rate_offered() -> None:
    assert trial_passed(figures(), max_p99_ms=2_000)
    assert not trial_passed(figures(ok=False), max_p99_ms=2_000)
    assert not trial_passed(figures(freshness_p99_ms=2_000.1), max_p99_ms=2_000)
    assert not trial_passed(figures(freshness_p99_ms=None), max_p99_ms=2_000)
    # Batches the collector refused until load gave up are not "lost" in load's verdict; here they fail.
    assert not trial_passed(figures(not_accepted=100), max_p99_ms=2_000)
    assert not trial_passed(figures(accepted_per_s=1_800.0), max_p99_ms=2_000)
    # A run that broke has no figures but the rate and its error.
    assert not trial_passed({"rate": 2_000.0, "ok": False, "error": "WarehouseUnavailable"}, max_p99_ms=2_000)
