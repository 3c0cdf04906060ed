"""Lift over time: cumulative per day since the start and per exposure day, from hand-made frames.

The frames are built here (no warehouse) so that each point's units and rows are known exactly; the
end-to-end check through the named queries is in test_analysis.py."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from clickhouse.experiments.analysis import ExperimentFrames, ExperimentResults, MetricResult, analyze
from clickhouse.experiments.stats import AnalysisConfig
from clickhouse.experiments.timeline import MAX_POINTS
from tests.helpers.experiment_fixtures import make_experiment

T0 = datetime(2026, 11, 2, tzinfo=UTC)
FAST = AnalysisConfig(bootstrap_resamples=0)


def frames(units: int = 3000, days: float = 4.0, seed: int = 0, novelty: float = 0.0) -> ExperimentFrames:
    """Units exposed uniformly over ``days``; each may save once within two days of its exposure.
    ``novelty``: extra save probability in treatment on the exposure day only."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"u{i}" for i in range(units)], dtype=object)
    variant = np.where(rng.random(units) < 0.5, "control", "treatment")
    exposed = pd.Timestamp(T0) + pd.to_timedelta(rng.uniform(0, days * 86_400, units), unit="s")
    delay = np.where(rng.random(units) < 0.5, rng.uniform(0, 86_399, units), rng.uniform(86_400, 172_800, units))
    p = 0.4 + novelty * ((variant == "treatment") & (delay < 86_400))
    saves = rng.random(units) < p
    saved_at = exposed + pd.to_timedelta(delay, unit="s")
    unit_frame = pd.DataFrame(
        {"anonymous_id": ids, "variant": variant, "first_exposure_at": exposed, "contaminated": False}
    )
    events = pd.DataFrame(
        {
            "anonymous_id": ids[saves],
            "event_type": "image_saved",
            "score": np.nan,
            "event_ts": saved_at[saves],
        }
    )
    durations = pd.DataFrame(
        {
            "input_id": [f"i{i}" for i in range(int(saves.sum()))],
            "anonymous_id": ids[saves],
            "diff_second": rng.lognormal(4, 0.5, int(saves.sum())),
            "saved_at": saved_at[saves],
        }
    )
    return ExperimentFrames(units=unit_frame, events=events, durations=durations)


def metric(results: ExperimentResults, name: str) -> MetricResult:
    every = [*results.conversion, results.task_duration.mean if results.task_duration else None, results.score]
    return next(m for m in every if m is not None and m.name == name)


def test_the_last_cumulative_point_is_the_main_result_and_units_only_grow() -> None:
    experiment = make_experiment(start=T0)
    results = analyze(frames(), experiment, FAST)
    timelines = {t.metric: t for t in results.timeline}
    assert {"conversion_save", "task_duration_s"} <= set(timelines)
    for name in ("conversion_save", "task_duration_s"):
        main = metric(results, name).comparisons[0]
        points = timelines[name].cumulative
        # Exposures over 4 days and saves up to 2 days later: 6 or 7 calendar days.
        assert 6 <= len(points) <= 7 and [p.day for p in points] == list(range(len(points)))
        last = points[-1]
        assert last.relative_lift == pytest.approx(main.relative_lift)
        assert last.lift_ci_low == pytest.approx(main.lift_ci_low)
        assert last.lift_ci_high == pytest.approx(main.lift_ci_high)
        assert last.p_value == pytest.approx(main.p_value)
        assert sum(last.units.values()) == 3000
        totals = [sum(p.units.values()) for p in points]
        assert totals == sorted(totals)
        assert points[0].date == T0.date()


def test_a_novelty_effect_shows_on_exposure_day_zero_only() -> None:
    results = analyze(frames(units=20_000, novelty=0.15, seed=3), make_experiment(start=T0), FAST)
    save = next(t for t in results.timeline if t.metric == "conversion_save")
    by_day = save.by_exposure_day
    assert [p.day for p in by_day][:2] == [0, 1]
    assert by_day[0].significant and by_day[0].relative_lift is not None and by_day[0].relative_lift > 0.3
    assert by_day[1].relative_lift is not None and abs(by_day[1].relative_lift) < 0.1
    # A unit counts on day k only when it was observed for all of that day (up to the last save).
    counted = [sum(p.units.values()) for p in by_day]
    assert counted == sorted(counted, reverse=True) and counted[0] == 20_000 > counted[-1]


def test_long_experiments_are_bounded_in_points() -> None:
    results = analyze(frames(units=2000, days=150.0), make_experiment(start=T0), FAST)
    save = next(t for t in results.timeline if t.metric == "conversion_save")
    assert len(save.cumulative) <= MAX_POINTS and len(save.by_exposure_day) <= MAX_POINTS
    assert sum(save.cumulative[-1].units.values()) == 2000


def test_no_timeline_when_switched_off() -> None:
    results = analyze(
        frames(units=500), make_experiment(start=T0), AnalysisConfig(bootstrap_resamples=0, timeline=False)
    )
    assert results.timeline == []
