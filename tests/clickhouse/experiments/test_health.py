"""Health by dimension finds a broken client where it is: SRM within each dimension value and day,
exposures per day, the contaminated units counted and listed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clickhouse.experiments.analysis import ExperimentFrames, analyze
from clickhouse.experiments.health import health, srm_chi_square
from clickhouse.experiments.stats import AnalysisConfig
from clickhouse.experiments.warehouse import fetch_frames
from funnelstream.experiments.definitions import Experiment
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_warehouse import experiment_warehouse, load

T0 = datetime(2026, 11, 2, tzinfo=UTC)
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge")


def frames_with_srm_in(browser: str, drop_share: float, units: int = 20_000, seed: int = 5) -> ExperimentFrames:
    """Units on four browsers over three days, half in each arm; ``drop_share`` of the treatment
    units on ``browser`` lost (their exposure never arrives), as a broken client would lose them."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"u{i}" for i in range(units)], dtype=object)
    variant = np.where(rng.random(units) < 0.5, "treatment", "control")
    on = np.array(BROWSERS, dtype=object)[rng.integers(0, len(BROWSERS), units)]
    exposed = pd.Series([T0 + timedelta(seconds=float(s)) for s in rng.uniform(0, 3 * 86_400, units)])
    kept = ~((on == browser) & (variant == "treatment") & (rng.random(units) < drop_share))
    unit_frame = pd.DataFrame(
        {"anonymous_id": ids, "variant": variant, "first_exposure_at": exposed, "contaminated": False}
    )[kept]
    systems = np.array(["Linux", "Windows", "macOS"], dtype=object)[rng.integers(0, 3, units)]
    dimensions = pd.DataFrame({"anonymous_id": ids, "browser": on, "os": systems, "device": "desktop", "source": ""})
    return ExperimentFrames(
        units=unit_frame.reset_index(drop=True),
        events=pd.DataFrame(columns=["anonymous_id", "event_type", "score"]),
        durations=pd.DataFrame(columns=["input_id", "anonymous_id", "diff_second"]),
        dimensions=dimensions[kept].reset_index(drop=True),
    )


def test_srm_planted_in_one_browser_is_found_there_and_nowhere_else(experiment: Experiment) -> None:
    # 15 % of Safari's treatment units lost: plain in Safari, too diluted to alert in the whole
    # experiment or in any value that mixes browsers (every os, the one device, every day).
    result, alerts = health(frames_with_srm_in("Safari", 0.15), experiment, AnalysisConfig())
    by_browser = {r.value: r for r in result.dimensions if r.dimension == "browser"}
    assert set(by_browser) == set(BROWSERS)
    safari = by_browser["Safari"]
    assert safari.alert and safari.p_value is not None and safari.p_value < 1e-5
    assert [r.value for r in result.dimensions if r.alert] == ["Safari"]
    assert alerts == [f"sample ratio mismatch in browser = Safari: chi-square p = {safari.p_value:.1e}"]
    assert safari.shares["treatment"] is not None and safari.shares["treatment"] < 0.48
    assert safari.expected_shares == {"control": 0.5, "treatment": 0.5}
    (desktop,) = [r for r in result.dimensions if r.dimension == "device"]
    assert sum(desktop.units.values()) == sum(sum(r.units.values()) for r in by_browser.values())
    (source,) = [r for r in result.dimensions if r.dimension == "source"]
    assert source.value == "unknown"
    assert desktop.p_value is not None and desktop.p_value > safari.p_value * 1000


def test_a_balanced_experiment_raises_no_dimension_alert(experiment: Experiment) -> None:
    result, alerts = health(frames_with_srm_in("Safari", 0.0), experiment, AnalysisConfig())
    assert alerts == []
    assert all(r.p_value is not None for r in result.dimensions if r.dimension == "browser")


def test_exposures_per_day_are_the_clean_units_first_exposed_that_utc_day(experiment: Experiment) -> None:
    frames = frames_with_srm_in("Safari", 0.0, units=3000)
    units = frames.units.copy()
    units.loc[:9, "contaminated"] = True
    result, _ = health(
        ExperimentFrames(units, frames.events, frames.durations, dimensions=frames.dimensions),
        experiment,
        AnalysisConfig(),
    )
    clean = units[~units["contaminated"]]
    expected = clean.groupby([clean["first_exposure_at"].dt.date, "variant"]).size().unstack(fill_value=0)
    assert [d.date for d in result.exposures_per_day] == list(expected.index)
    for day in result.exposures_per_day:
        assert day.units == {k: int(v) for k, v in expected.loc[day.date].items()}
    days = [r for r in result.dimensions if r.dimension == "day"]
    assert [r.value for r in days] == [str(d) for d in expected.index]


def test_a_value_too_small_for_a_chi_square_is_shown_without_a_test(experiment: Experiment) -> None:
    frames = frames_with_srm_in("Safari", 0.0, units=2000)
    dims = frames.dimensions.copy()
    # Eight units on a rare browser, all in one arm: a skew a chi-square cannot judge at that size.
    rare = frames.units.index[frames.units["variant"] == "control"][:8]
    dims.loc[dims["anonymous_id"].isin(frames.units.loc[rare, "anonymous_id"]), "browser"] = "Lynx"
    frames = ExperimentFrames(frames.units, frames.events, frames.durations, dimensions=dims)
    result, alerts = health(frames, experiment, AnalysisConfig())
    (lynx,) = [r for r in result.dimensions if r.value == "Lynx"]
    assert lynx.units == {"control": 8, "treatment": 0}
    assert lynx.p_value is None and lynx.chi2 is None and not lynx.alert
    assert not any("Lynx" in a for a in alerts)


def test_the_chi_square_is_pearsons_against_the_weights() -> None:
    observed = np.array([5200.0, 4800.0])
    chi2, p_value = srm_chi_square(observed, np.array([0.5, 0.5]))
    assert chi2 == pytest.approx(16.0)
    assert p_value == pytest.approx(stats.chi2.sf(16.0, 1))
    chi2, p_value = srm_chi_square(np.array([2000.0, 3000.0, 5000.0]), np.array([0.2, 0.3, 0.5]))
    assert chi2 == pytest.approx(0.0) and p_value == pytest.approx(1.0)
    assert all(np.isnan(srm_chi_square(np.zeros(2), np.array([0.5, 0.5]))))


def test_contaminated_units_are_counted_by_reason_and_the_first_ones_listed(experiment: Experiment) -> None:
    frames = frames_with_srm_in("Safari", 0.0, units=500)
    contaminated = pd.DataFrame(
        {
            "anonymous_id": [f"c{i:03d}" for i in range(7, -1, -1)],
            "reason": ["device"] * 5 + ["user"] * 3,
            "variants": [np.array(["control", "treatment"], dtype=object)] * 8,
            "user_ids": [np.array([], dtype=object)] * 5 + [["user1"], ["user1"], ["user2"]],
        }
    )
    frames = ExperimentFrames(
        frames.units, frames.events, frames.durations, dimensions=frames.dimensions, contaminated=contaminated
    )
    result, alerts = health(frames, experiment, AnalysisConfig(contaminated_listed=4))
    assert result.contaminated_by_reason == {"device": 5, "user": 3}
    assert [u.anonymous_id for u in result.contaminated_units] == ["c000", "c001", "c002", "c003"]
    assert result.contaminated_units[0].reason == "user" and result.contaminated_units[0].user_ids == ["user2"]
    assert result.contaminated_units[3].variants == ["control", "treatment"]
    assert result.contaminated_units[3].user_ids == []
    assert result.contaminated_units_listed_limit == 4
    assert alerts == []


def test_no_units_give_an_empty_health(experiment: Experiment) -> None:
    frames = frames_with_srm_in("Safari", 0.0, units=0)
    result, alerts = health(frames, experiment, AnalysisConfig())
    assert result.dimensions == [] and result.exposures_per_day == [] and alerts == []


def warehouse_frames(chdb_path: Path, events: pd.DataFrame, experiment: Experiment) -> ExperimentFrames:
    with experiment_warehouse(chdb_path) as warehouse:
        load(warehouse, [events], experiment.key)
        return fetch_frames(warehouse, experiment)


@pytest.mark.integration
def test_srm_planted_in_one_browser_is_found_there_through_the_warehouse(
    experiment: Experiment, chdb_path: Path
) -> None:
    frames = frames_with_srm_in("Safari", 0.15, units=20_000)
    browsers = frames.dimensions.set_index("anonymous_id")["browser"]
    units = frames.units
    # The exposures the frames describe, as the collector would log them; the query finds the rest.
    events = pd.DataFrame(
        {
            "event_type": "experiment_exposure",
            "anonymous_id": units["anonymous_id"],
            "event_ts": units["first_exposure_at"],
            "experiment_key": experiment.key,
            "variant": units["variant"],
            "browser": browsers.reindex(units["anonymous_id"]).to_numpy(object),
            "os": "Linux",
            "device": "desktop",
            "source": "web",
        }
    )
    fetched = warehouse_frames(chdb_path, events, experiment)
    result, alerts = health(fetched, experiment, AnalysisConfig())
    by_browser = {r.value: r for r in result.dimensions if r.dimension == "browser"}
    assert set(by_browser) == set(BROWSERS)
    assert [r.value for r in result.dimensions if r.alert] == ["Safari"]
    assert len(alerts) == 1 and alerts[0].startswith("sample ratio mismatch in browser = Safari: chi-square p = ")
    assert [r.value for r in result.dimensions if r.dimension == "source"] == ["web"]
    # The same counts as the frames built by hand: the query and the analysis agree on every unit.
    by_hand, _ = health(frames, experiment, AnalysisConfig())
    assert [(r.dimension, r.value, r.units) for r in result.dimensions if r.dimension == "browser"] == [
        (r.dimension, r.value, r.units) for r in by_hand.dimensions if r.dimension == "browser"
    ]


@pytest.mark.integration
def test_the_contaminated_listing_is_the_units_views_contaminated_units(
    experiment: Experiment, chdb_path: Path
) -> None:
    events, _ = simulate(JourneySpec(units=2000, contaminated_share=0.03, login_rate=0.5, second_device_rate=0.5), 11)
    frames = warehouse_frames(chdb_path, events, experiment)
    result, _ = health(frames, experiment, AnalysisConfig(contaminated_listed=10_000))
    flagged = set(frames.units.loc[frames.units["contaminated"].astype(bool), "anonymous_id"])
    assert len(flagged) > 20
    assert {u.anonymous_id for u in result.contaminated_units} == flagged
    assert sum(result.contaminated_by_reason.values()) == len(flagged)
    assert all(len(u.variants) == 2 for u in result.contaminated_units)
    first = health(frames, experiment, AnalysisConfig(contaminated_listed=5))[0].contaminated_units
    assert [u.anonymous_id for u in first] == sorted(flagged)[:5]


@pytest.mark.integration
def test_srm_planted_by_the_journey_generator_in_safari_is_found_in_safari(
    experiment: Experiment, chdb_path: Path
) -> None:
    events, _ = simulate(JourneySpec(units=20_000, srm_in=("browser", "Safari", 0.3)), 13)
    frames = warehouse_frames(chdb_path, events, experiment)
    result, alerts = health(frames, experiment, AnalysisConfig())
    browsers = [r for r in result.dimensions if r.dimension == "browser"]
    assert [r.value for r in browsers if r.alert] == ["Safari"]
    assert len(browsers) > 3 and all(r.p_value is not None for r in browsers)
    # The os and device values that hold Safari may show it too, diluted: Safari is the sharpest.
    safari = next(r for r in browsers if r.value == "Safari")
    assert safari.p_value == min(r.p_value for r in result.dimensions if r.p_value is not None)
    assert alerts[0].startswith("sample ratio mismatch in browser = Safari: chi-square p = ")


@pytest.mark.integration
def test_the_analysis_reports_health_and_progress(chdb_path: Path) -> None:
    planned = make_experiment(plan={"mde": 0.05}, start=T0)
    events, _ = simulate(JourneySpec(units=4000, srm_in=("browser", "Safari", 0.5)), 17)
    frames = warehouse_frames(chdb_path, events, planned)
    results = analyze(frames, planned, AnalysisConfig(bootstrap_resamples=0), now=T0 + timedelta(days=3))
    assert results.health is not None and results.health.dimensions
    assert any(a.startswith("sample ratio mismatch in browser = Safari") for a in results.alerts)
    assert results.progress is not None and results.progress.metric == planned.primary_metric
    assert results.progress.units == sum(e.units for e in results.exposures)
    assert results.progress.days_elapsed == pytest.approx(3)
    assert results.progress.required_units is not None and results.progress.share is not None
