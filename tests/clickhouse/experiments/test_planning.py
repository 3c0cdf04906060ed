"""Planning gives the sample a test needs: the closed form for a known variance, the stated power when
an experiment of that size is simulated, days from the traffic, and progress towards the plan."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clickhouse.experiments.analysis import ExperimentFrames
from clickhouse.experiments.planning import observed_days, per_unit_moments, plan, progress
from clickhouse.experiments.stats import AnalysisConfig, compare, ratio_estimate
from clickhouse.experiments.units import members
from clickhouse.experiments.warehouse import fetch_frames
from funnelstream.experiments.definitions import Experiment
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_warehouse import experiment_warehouse, load

T0 = datetime(2026, 11, 2, tzinfo=UTC)
SAVE_RATE = 0.4


def traffic(units: int, days: float, seed: int = 1) -> ExperimentFrames:
    """``units`` devices first seen uniformly over ``days`` days, a share ``SAVE_RATE`` saving an image,
    each with one to three images of lognormal task time."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"u{i}" for i in range(units)], dtype=object)
    offsets = np.sort(rng.uniform(0, days * 86_400, units))
    offsets[0], offsets[-1] = 0.0, days * 86_400  # the span is exactly `days`
    exposed = pd.to_datetime(T0) + pd.to_timedelta(offsets, unit="s")
    unit_frame = pd.DataFrame(
        {"anonymous_id": ids, "variant": "control", "first_exposure_at": exposed, "contaminated": False}
    )
    savers = ids[rng.random(units) < SAVE_RATE]
    events = pd.DataFrame({"anonymous_id": savers, "event_type": "image_saved", "score": np.nan})
    images = rng.integers(1, 4, units)
    durations = pd.DataFrame(
        {
            "input_id": [f"i{k}" for k in range(int(images.sum()))],
            "anonymous_id": np.repeat(ids, images),
            "diff_second": rng.lognormal(np.log(60), 0.6, int(images.sum())),
        }
    )
    return ExperimentFrames(units=unit_frame, events=events, durations=durations)


def closed_form_units(variance: float, mean: float, mde: float, alpha: float, power: float) -> float:
    """Two equal arms, z-test of the relative lift, its variance under the effect:
    n = (z_a + z_b)^2 s^2 / (mu mde)^2 (1 / w_v + (1 + mde)^2 / w_c), w = 1/2."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z**2 * variance / (mean * mde) ** 2 * (2 + 2 * (1 + mde) ** 2))


def test_per_unit_variance_is_the_delta_method_variance_times_the_units() -> None:
    rng = np.random.default_rng(0)
    saved = (rng.random(5000) < SAVE_RATE).astype(float)
    mean, variance = per_unit_moments(saved, np.ones(5000))
    assert mean == pytest.approx(saved.mean())
    assert variance == pytest.approx(saved.var(ddof=1))
    x, y = rng.poisson(3, 5000).astype(float), rng.poisson(2, 5000).astype(float) + 1
    mean, variance = per_unit_moments(x, y)
    assert variance / 5000 == pytest.approx(ratio_estimate(x, y).variance)


def test_required_units_for_a_known_variance_match_the_closed_form() -> None:
    experiment = make_experiment(metrics=["funnel_conversion", "task_duration"])
    result = plan(traffic(20_000, 7), experiment, mde=0.05, power=0.8, alpha=0.05, days=14, source="recent_traffic")
    save = next(m for m in result.metrics if m.metric == "conversion_save")
    assert save.baseline == pytest.approx(SAVE_RATE, abs=0.01)
    assert save.per_unit_standard_deviation is not None and save.baseline is not None
    variance = save.per_unit_standard_deviation**2
    assert variance == pytest.approx(save.baseline * (1 - save.baseline), rel=1e-3)
    expected = closed_form_units(variance, save.baseline, 0.05, 0.05, 0.8)
    assert save.required_units == math.ceil(expected)
    assert [m.metric for m in result.metrics] == [
        "conversion_upload",
        "conversion_tool",
        "conversion_inference",
        "conversion_save",
        "conversion_score",
        "task_duration_s",
    ]
    task = next(m for m in result.metrics if m.metric == "task_duration_s")
    assert task.required_units is not None and task.baseline == pytest.approx(60 * np.exp(0.18), rel=0.05)
    # Nobody uploads in this traffic: a metric without variance has no plan, and says so with None.
    upload = next(m for m in result.metrics if m.metric == "conversion_upload")
    assert upload.required_units is None and upload.reachable_mde is None


def test_days_come_from_the_units_per_day_and_the_reachable_mde_from_the_days() -> None:
    experiment = make_experiment(metrics=["funnel_conversion"])
    frames = traffic(14_000, 7)
    result = plan(frames, experiment, mde=0.05, power=0.8, alpha=0.05, days=14, source="recent_traffic")
    assert result.units_per_day == pytest.approx(2000)
    assert result.weights == [0.5, 0.5] and result.source == "recent_traffic"
    save = next(m for m in result.metrics if m.metric == "conversion_save")
    assert save.required_units is not None and save.required_days is not None
    assert save.required_days == pytest.approx(save.required_units / 2000)
    # In exactly the days the MDE needs, the MDE is what is reachable.
    again = plan(frames, experiment, mde=0.05, power=0.8, alpha=0.05, days=save.required_days, source="experiment")
    reached = next(m for m in again.metrics if m.metric == "conversion_save").reachable_mde
    assert reached == pytest.approx(0.05, rel=0.02)
    # Four times the days: half the MDE (the standard error falls as 1 / sqrt(n)).
    longer = plan(frames, experiment, mde=0.05, power=0.8, alpha=0.05, days=4 * save.required_days, source="experiment")
    assert next(m for m in longer.metrics if m.metric == "conversion_save").reachable_mde == pytest.approx(
        0.025, rel=0.03
    )


def test_at_the_planned_sample_a_simulated_experiment_reaches_the_stated_power() -> None:
    experiment = make_experiment(metrics=["funnel_conversion"])
    mde, power = 0.10, 0.8
    result = plan(traffic(20_000, 7), experiment, mde=mde, power=power, alpha=0.05, days=14, source="recent_traffic")
    needed = next(m for m in result.metrics if m.metric == "conversion_save").required_units
    assert needed is not None
    rng = np.random.default_rng(42)
    runs, per_arm = 400, needed // 2
    config = AnalysisConfig()
    control = rng.random((runs, per_arm)) < SAVE_RATE
    treated = rng.random((runs, per_arm)) < SAVE_RATE * (1 + mde)
    ones = np.ones(per_arm)
    detected = sum(
        compare(
            ratio_estimate(c.astype(float), ones), ratio_estimate(t.astype(float), ones), "control", "treatment", config
        ).significant
        for c, t in zip(control, treated, strict=True)
    )
    print(f"power at the planned {needed} units: {detected}/{runs}")
    assert abs(detected / runs - power) <= 0.07


def test_observed_days_need_two_exposures_a_minute_apart() -> None:
    one = np.array(["2026-11-02T00:00"], dtype="datetime64[ms]")
    assert observed_days(one) is None
    assert observed_days(np.repeat(one, 5)) is None
    two = np.array(["2026-11-02T00:00", "2026-11-05T12:00", "NaT"], dtype="datetime64[ms]")
    assert observed_days(two) == pytest.approx(3.5)


def test_progress_counts_units_and_days_towards_the_planned_sample() -> None:
    experiment = make_experiment(
        metrics=["funnel_conversion"], primary_metric="conversion_save", plan={"mde": 0.05}, start=T0
    )
    frames = traffic(6000, 3)
    units = frames.units.assign(variant=np.where(np.arange(6000) % 2, "treatment", "control"))
    clean = members(units, experiment.variant_keys)
    saved = clean.ids.isin(frames.events["anonymous_id"]).astype(float)
    now = T0 + timedelta(days=4)
    result = progress(clean, saved, np.ones(len(clean)), experiment, AnalysisConfig(), now)
    assert result is not None
    assert result.metric == "conversion_save" and result.mde == 0.05 and result.power == 0.8
    assert result.units == 6000 and result.days_elapsed == pytest.approx(4)
    planned = plan(frames, experiment, mde=0.05, power=0.8, alpha=0.05, days=14, source="experiment")
    # One arrival rate for the plan and the progress: new units over the span of first exposures.
    span = observed_days(clean.first_exposure)
    assert span is not None and result.units_per_day == pytest.approx(6000 / span) == planned.units_per_day
    assert result.required_units == next(m for m in planned.metrics if m.metric == "conversion_save").required_units
    assert result.required_units is not None and result.share == pytest.approx(6000 / result.required_units)
    assert result.days_remaining == pytest.approx((result.required_units - 6000) / result.units_per_day)
    # Past its end the clock stops at the end.
    ended = make_experiment(
        metrics=["funnel_conversion"],
        primary_metric="conversion_save",
        plan={"mde": 0.05},
        start=T0,
        end=T0 + timedelta(days=2),
    )
    stopped = progress(clean, saved, np.ones(len(clean)), ended, AnalysisConfig(), now)
    assert stopped is not None and stopped.days_elapsed == pytest.approx(2)
    assert progress(clean, saved, np.ones(len(clean)), make_experiment(), AnalysisConfig(), now) is None


@pytest.mark.integration
def test_a_running_experiment_is_planned_from_its_own_units_through_the_warehouse(
    experiment: Experiment, chdb_path: Path
) -> None:
    spec = JourneySpec(units=3000, exposure_window_s=3 * 86_400)
    events, _ = simulate(spec, 21)
    with experiment_warehouse(chdb_path) as warehouse:
        load(warehouse, [events], experiment.key)
        frames = fetch_frames(warehouse, experiment)
    result = plan(frames, experiment, mde=0.05, power=0.8, alpha=0.05, days=14, source="experiment")
    # Units arrive uniformly over the three days of exposures.
    assert result.units_per_day == pytest.approx(3000 / 3, rel=0.01)
    save = next(m for m in result.metrics if m.metric == "conversion_save")
    assert save.baseline == pytest.approx(spec.control_save_conversion, abs=0.03)
    task = next(m for m in result.metrics if m.metric == "task_duration_s")
    for metric in (save, task):
        assert metric.required_units is not None and metric.required_days is not None
        assert metric.reachable_mde is not None and 0 < metric.reachable_mde < 0.5
