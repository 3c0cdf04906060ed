"""The analysis gets the answer right: seeded simulations with known truth, plus the exclusion rules.

Every case goes through a real migrated chdb database and the experiment's named queries
(tests.helpers.experiment_warehouse): units, contamination, counted events and task durations are
SQL's, so these tests check the definitions and the statistics together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clickhouse.experiments.analysis import ExperimentFrames, ExperimentResults, MetricResult, analyze
from clickhouse.experiments.stats import SEQUENTIAL_LABEL, AnalysisConfig, Comparison, ratio_estimate
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.errors import EventsFrameError
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_warehouse import analyze_events, analyze_runs

pytestmark = pytest.mark.integration

FAST = AnalysisConfig(bootstrap_resamples=0, winsor_quantile=None)
MANY_RUNS = AnalysisConfig(bootstrap_resamples=0, winsor_quantile=None, timeline=False)
"""Hundreds of simulated runs read the main result only; lift over time is checked on single runs."""
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def metric(results: ExperimentResults, name: str) -> MetricResult:
    if name == "task_duration_s":
        assert results.task_duration is not None
        return results.task_duration.mean
    return next(m for m in results.conversion if m.name == name)


def test_planted_effect_is_recovered_in_at_least_90_of_100_simulations(experiment: Experiment, chdb_path: Path) -> None:
    spec = JourneySpec(task_time_factor=0.7, save_conversion_lift=0.05)
    simulated = [simulate(spec, seed) for seed in range(100)]
    every = analyze_runs(chdb_path, [events for events, _ in simulated], experiment, MANY_RUNS)
    save_covered = task_covered = 0
    for results, (_, truth) in zip(every, simulated, strict=True):
        save = metric(results, "conversion_save").comparisons[0]
        task = metric(results, "task_duration_s").comparisons[0]
        assert save.ci_low is not None and save.ci_high is not None
        assert task.lift_ci_low is not None and task.lift_ci_high is not None
        save_covered += save.ci_low <= truth.save_conversion_difference <= save.ci_high
        task_covered += task.lift_ci_low <= truth.task_time_relative_lift <= task.lift_ci_high
    print(f"planted effect covered: save {save_covered}/100, task time {task_covered}/100")
    assert save_covered >= 90, save_covered
    assert task_covered >= 90, task_covered


def test_one_planted_run_reads_right_with_bootstrap_quantiles(experiment: Experiment, chdb_path: Path) -> None:
    events, truth = simulate(JourneySpec(units=4000, task_time_factor=0.7, save_conversion_lift=0.05), 7)
    results = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=300))
    task = metric(results, "task_duration_s").comparisons[0]
    assert task.significant and task.relative_lift == pytest.approx(-0.30, abs=0.06)
    assert results.task_duration is not None
    for q in results.task_duration.quantiles:
        assert q.ci_low is not None and q.ci_high is not None and q.difference is not None
        assert q.ci_low < q.difference < q.ci_high < 0
        # Multiplicative effect: each quantile shrinks by about 30 %.
        assert q.variant_value is not None and q.control_value is not None
        assert q.variant_value / q.control_value == pytest.approx(0.7, abs=0.08)
    save = metric(results, "conversion_save").comparisons[0]
    assert save.difference == pytest.approx(truth.save_conversion_difference, abs=0.035)
    assert not results.alerts


def test_a_a_false_positive_rate_is_near_five_percent(experiment: Experiment, chdb_path: Path) -> None:
    runs = 200
    positives = {"conversion_save": 0, "task_duration_s": 0}
    simulated = [simulate(JourneySpec(units=1500), seed)[0] for seed in range(1000, 1000 + runs)]
    for results in analyze_runs(chdb_path, simulated, experiment, MANY_RUNS):
        for name in positives:
            p_value = metric(results, name).comparisons[0].p_value
            assert p_value is not None
            positives[name] += p_value < 0.05
    print(f"A/A false positives in {runs} runs: {positives}")
    for name, count in positives.items():
        assert 0.02 <= count / runs <= 0.08, (name, count / runs)


def exposures_only(control: int, treatment: int) -> pd.DataFrame:
    n = control + treatment
    return pd.DataFrame(
        {
            "event_type": "experiment_exposure",
            "anonymous_id": [f"u{i}" for i in range(n)],
            "event_ts": T0,
            "experiment_key": "segmentation_tool",
            "variant": ["control"] * control + ["treatment"] * treatment,
        }
    )


def test_sample_ratio_mismatch_is_flagged_for_52_48_not_50_50(experiment: Experiment, chdb_path: Path) -> None:
    skewed = analyze_events(chdb_path, exposures_only(10_400, 9_600), experiment, FAST)
    assert skewed.srm.alert and skewed.srm.p_value is not None and skewed.srm.p_value < 0.001
    assert any("sample ratio mismatch" in alert for alert in skewed.alerts)

    rng = np.random.default_rng(3)
    treated = int(rng.binomial(20_000, 0.5))
    balanced = analyze_events(chdb_path, exposures_only(20_000 - treated, treated), experiment, FAST)
    assert not balanced.srm.alert and not balanced.alerts


def test_units_exposed_to_both_arms_are_excluded_and_counted(experiment: Experiment, chdb_path: Path) -> None:
    spec = JourneySpec(units=2000, contaminated_share=0.03)
    events, _ = simulate(spec, 11)
    results = analyze_events(chdb_path, events, experiment, FAST)
    both = events[events["event_type"] == "experiment_exposure"].groupby("anonymous_id")["variant"].nunique()
    contaminated = int((both > 1).sum())
    assert contaminated > 20
    assert results.contamination.units_in_several_variants == contaminated
    assert sum(e.units for e in results.exposures) == 2000 - contaminated
    assert results.contamination.alert and any("more than one variant" in a for a in results.alerts)

    clean, _ = simulate(JourneySpec(units=2000, contaminated_share=0.004), 11)
    quiet = analyze_events(chdb_path, clean, experiment, FAST)
    assert quiet.contamination.units_in_several_variants > 0 and not quiet.contamination.alert


def unit_events(
    unit: str,
    variant: str,
    exposed_at: datetime,
    saves_at: list[datetime],
    map_variant: str | None = None,
    duration_s: float = 60.0,
    user_id: str | None = None,
) -> list[dict[str, Any]]:
    """An exposure, then per save an image's tool click, inference (half way) and save."""
    rows = [
        {
            "event_type": "experiment_exposure",
            "anonymous_id": unit,
            "event_ts": exposed_at,
            "experiment_key": "segmentation_tool",
            "variant": variant,
            "input_id": None,
            "score": None,
            "experiments": {"segmentation_tool": variant},
        }
    ]
    for i, saved in enumerate(saves_at):
        image = f"{unit}-img{i}"
        for event_type, before_save_s in (
            ("tool_selected", duration_s),
            ("inference_requested", duration_s / 2),
            ("image_saved", 0.0),
        ):
            rows.append(
                {
                    "event_type": event_type,
                    "anonymous_id": unit,
                    "event_ts": saved - timedelta(seconds=before_save_s),
                    "experiment_key": None,
                    "variant": None,
                    "input_id": image,
                    "score": None,
                    "experiments": {"segmentation_tool": map_variant or variant},
                }
            )
    for row in rows:
        row["user_id"] = user_id
    return rows


def test_only_events_after_the_first_exposure_count(experiment: Experiment, chdb_path: Path) -> None:
    rows = []
    for i in range(50):
        # Control units saved an image an hour before they were exposed; it must not count.
        rows += unit_events(f"c{i}", "control", T0, [T0 - timedelta(hours=1)])
        rows += unit_events(f"t{i}", "treatment", T0, [T0 + timedelta(hours=1)] if i < 25 else [])
    results = analyze_events(chdb_path, pd.DataFrame(rows), experiment, FAST)
    arms = {arm.variant: arm.value for arm in metric(results, "conversion_save").arms}
    assert arms == {"control": 0.0, "treatment": 0.5}
    assert results.task_duration is not None and results.task_duration.images == {"control": 0, "treatment": 25}


def test_a_unit_whose_events_carry_the_other_variant_is_contaminated(experiment: Experiment, chdb_path: Path) -> None:
    rows = unit_events("a", "control", T0, [T0 + timedelta(hours=1)], map_variant="treatment")
    rows += unit_events("b", "treatment", T0, [T0 + timedelta(hours=1)])
    results = analyze_events(chdb_path, pd.DataFrame(rows), experiment, FAST)
    assert results.contamination.units_in_several_variants == 1
    assert [e.units for e in results.exposures] == [0, 1]


def test_only_the_current_phase_counts(chdb_path: Path) -> None:
    phase2 = make_experiment(phase=2, phase_start=T0 + timedelta(days=1))
    rows = unit_events("old", "control", T0, [T0 + timedelta(hours=1)])
    rows += unit_events("new", "treatment", T0 + timedelta(days=2), [])
    results = analyze_events(chdb_path, pd.DataFrame(rows), phase2, FAST)
    assert [e.units for e in results.exposures] == [0, 1]


def test_winsorization_when_asked_is_capped_over_both_arms_and_labelled(
    experiment: Experiment, chdb_path: Path
) -> None:
    control = [100.0 + i for i in range(100)]
    treatment = [10.0 + i for i in range(100)]
    rows = []
    for i in range(100):
        rows += unit_events(f"c{i}", "control", T0, [T0 + timedelta(hours=1)], duration_s=control[i])
        rows += unit_events(f"t{i}", "treatment", T0, [T0 + timedelta(hours=1)], duration_s=treatment[i])
    config = AnalysisConfig(bootstrap_resamples=0, winsor_quantile=0.9)
    results = analyze_events(chdb_path, pd.DataFrame(rows), experiment, config)
    assert results.task_duration is not None
    cap = float(np.quantile(control + treatment, 0.9))
    assert results.task_duration.winsor_cap_s == pytest.approx(cap)
    assert results.task_duration.winsor_quantile == 0.9 and "winsorized" in results.task_duration.mean.description
    arms = {arm.variant: arm.value for arm in results.task_duration.mean.arms}
    # A cap per arm would have clipped treatment at its own 90th percentile; the shared cap leaves it whole.
    assert arms["treatment"] == pytest.approx(np.mean(treatment))
    assert arms["control"] == pytest.approx(np.mean(np.minimum(control, cap)))
    assert arms["control"] is not None and arms["control"] < np.mean(control)


def test_ratio_estimate_matches_a_cluster_bootstrap() -> None:
    rng = np.random.default_rng(5)
    images = 1 + rng.poisson(2, 800)
    speed = rng.lognormal(0, 0.5, 800)
    totals = np.array([speed[u] * rng.lognormal(4, 0.5, k).sum() for u, k in enumerate(images)])
    estimate = ratio_estimate(totals, images.astype(float))
    draws = rng.integers(0, 800, size=(2000, 800))
    boot = totals[draws].sum(axis=1) / images[draws].sum(axis=1)
    assert np.sqrt(estimate.variance) == pytest.approx(boot.std(), rel=0.1)


def test_sequential_mode_is_labelled_and_wider(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(task_time_factor=0.8, save_conversion_lift=0.05), 2)
    fixed = analyze_events(chdb_path, events, experiment, FAST)
    sequential = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=0, sequential=True))
    assert sequential.mode == "sequential" and sequential.mode_label == SEQUENTIAL_LABEL
    fixed_task = metric(fixed, "task_duration_s").comparisons[0]
    seq_task = metric(sequential, "task_duration_s").comparisons[0]
    assert seq_task.sequential is not None
    assert seq_task.sequential.ci_low is not None and seq_task.sequential.ci_high is not None
    assert fixed_task.ci_low is not None and fixed_task.ci_high is not None
    assert seq_task.sequential.ci_low < fixed_task.ci_low and seq_task.sequential.ci_high > fixed_task.ci_high
    assert seq_task.sequential.p_value is not None and fixed_task.p_value is not None
    assert seq_task.sequential.p_value >= fixed_task.p_value


def test_a_frame_without_the_needed_columns_is_refused_by_name(experiment: Experiment) -> None:
    frames = ExperimentFrames(
        units=pd.DataFrame({"anonymous_id": [], "variant": [], "first_exposure_at": []}),
        events=pd.DataFrame({"anonymous_id": [], "event_type": [], "score": []}),
        durations=pd.DataFrame({"input_id": [], "anonymous_id": [], "diff_second": []}),
    )
    with pytest.raises(EventsFrameError, match=r"units\.contaminated"):
        analyze(frames, experiment)


def test_results_serialise_to_json(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=300), 1)
    results = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=50))
    assert ExperimentResults.model_validate_json(results.model_dump_json()) == results


def test_task_time_runs_from_the_first_tool_click_to_the_save_of_an_inferred_result(
    experiment: Experiment, chdb_path: Path
) -> None:
    # Tool click at 20 s, save at 23 s (nothing inferred yet), inference at 25 s,
    # save at 40 s. The task ends with the save of the inferred result: 20 s, not 3 s.
    start = T0 + timedelta(hours=1)
    rows = unit_events("c", "control", T0, [])
    rows += [
        {"event_type": kind, "anonymous_id": "c", "event_ts": start + timedelta(seconds=at), "input_id": "c-img"}
        for kind, at in (
            ("tool_selected", 20),
            ("image_saved", 23),
            ("inference_requested", 25),
            ("image_saved", 40),
        )
    ]
    rows += unit_events("t", "treatment", T0, [start], duration_s=30.0)
    results = analyze_events(chdb_path, pd.DataFrame(rows), experiment, FAST)
    assert results.task_duration is not None
    arms = {arm.variant: (arm.numerator, arm.denominator) for arm in results.task_duration.mean.arms}
    assert arms == {"control": (20.0, 1.0), "treatment": (30.0, 1.0)}
    assert results.task_duration.images == {"control": 1, "treatment": 1}


def test_task_time_mean_is_the_plain_mean_of_the_durations_unless_winsorization_is_asked(
    experiment: Experiment, chdb_path: Path
) -> None:
    # The figure /v1/task-times and `report funnel` give for the same images: no cap of the analysis's own.
    control = [100.0 + i for i in range(99)] + [3000.0]
    rows = []
    for i, seconds in enumerate(control):
        rows += unit_events(f"c{i}", "control", T0, [T0 + timedelta(hours=1)], duration_s=seconds)
        rows += unit_events(f"t{i}", "treatment", T0, [T0 + timedelta(hours=1)], duration_s=60.0)
    results = analyze_events(chdb_path, pd.DataFrame(rows), experiment, AnalysisConfig(bootstrap_resamples=0))
    assert results.task_duration is not None
    assert results.task_duration.winsor_cap_s is None and results.task_duration.winsor_quantile is None
    arms = {arm.variant: arm.value for arm in results.task_duration.mean.arms}
    assert arms["control"] == pytest.approx(np.mean(control))
    assert "winsorized" not in results.task_duration.mean.description


def test_a_person_in_both_arms_makes_all_their_devices_contaminated(experiment: Experiment, chdb_path: Path) -> None:
    # User U1 logs in on device A (control) and device B (treatment); device C is someone else.
    saved = [T0 + timedelta(hours=1)]
    rows = unit_events("A", "control", T0, saved, user_id="U1")
    rows += unit_events("B", "treatment", T0, saved, user_id="U1")
    rows += unit_events("C", "treatment", T0, saved)
    results = analyze_events(chdb_path, pd.DataFrame(rows), experiment, FAST)
    assert results.contamination.units_in_several_variants == 2
    assert results.contamination.units_exposed == 3
    assert [e.units for e in results.exposures] == [0, 1]
    assert results.contamination.alert and any("2 of 3 units" in alert for alert in results.alerts)
    save = metric(results, "conversion_save")
    assert {arm.variant: arm.units for arm in save.arms} == {"control": 0, "treatment": 1}


def test_forced_exposures_are_not_units_and_never_reach_the_sample_ratio_check(
    experiment: Experiment, chdb_path: Path
) -> None:
    # Logged before forced assignments stopped logging: QA devices forced into treatment.
    balanced = exposures_only(1000, 1000)
    forced = exposures_only(0, 200).assign(
        anonymous_id=[f"qa-{i}" for i in range(200)], properties=[{"assignment_source": "forced"}] * 200
    )
    results = analyze_events(chdb_path, pd.concat([balanced, forced], ignore_index=True), experiment, FAST)
    assert [e.units for e in results.exposures] == [1000, 1000]
    assert results.contamination.units_exposed == 2000
    assert not results.srm.alert and not results.alerts


def test_each_metric_has_its_role_and_secondary_p_values_are_adjusted_as_one_family(chdb_path: Path) -> None:
    plan = make_experiment(primary_metric="task_duration_s", guardrail_metrics=["conversion_save"], correction="holm")
    events, _ = simulate(JourneySpec(units=1500, task_time_factor=0.8, save_conversion_lift=0.03), 12)
    results = analyze_events(chdb_path, events, plan, FAST)
    assert results.task_duration is not None and results.score is not None
    every = [*results.conversion, results.task_duration.mean, results.score]
    roles = {m.name: m.role for m in every}
    assert roles["task_duration_s"] == "primary" and roles["conversion_save"] == "guardrail"
    secondary = [m for m in every if m.role == "secondary"]
    assert {m.name for m in secondary} == {
        "conversion_upload",
        "conversion_tool",
        "conversion_inference",
        "conversion_score",
        "mean_score",
    }
    for m in every:
        for c in m.comparisons:
            if m.role == "secondary" and c.p_value is not None:
                assert c.p_value_adjusted is not None and c.p_value_adjusted >= c.p_value
                assert c.significant == (c.p_value_adjusted < 0.05)
            else:  # read unadjusted, or no p-value at all (every unit uploads: no variance)
                assert c.p_value_adjusted is None
    # Holm over the family: the smallest raw p-value is multiplied by the family's size (capped at 1).
    raw = [c.p_value for m in secondary for c in m.comparisons if c.p_value is not None]
    adjusted = [c.p_value_adjusted for m in secondary for c in m.comparisons]
    assert min(a for a in adjusted if a is not None) == pytest.approx(min(1.0, len(raw) * min(raw)))

    bh = analyze_events(chdb_path, events, make_experiment(correction="benjamini_hochberg"), FAST)
    bh_secondary = [c for m in bh.conversion if m.role == "secondary" for c in m.comparisons if c.p_value]
    assert bh_secondary and all(c.p_value_adjusted is not None for c in bh_secondary)


def lift_width(comparison: Comparison) -> float:
    assert comparison.lift_ci_low is not None and comparison.lift_ci_high is not None
    return comparison.lift_ci_high - comparison.lift_ci_low


def test_cuped_narrows_the_task_time_interval_and_still_covers_the_planted_effect(
    experiment: Experiment, chdb_path: Path
) -> None:
    spec = JourneySpec(units=3000, task_time_factor=0.8, pre_period_images=3.0, save_propensity_sigma=1.0)
    events, truth = simulate(spec, 21)
    adjusted = analyze_events(chdb_path, events, experiment, FAST)
    plain = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=0, cuped=False))
    assert adjusted.cuped_lookback_days == experiment.cuped.lookback_days and plain.cuped_lookback_days is None
    task = metric(adjusted, "task_duration_s").comparisons[0]
    task_plain = metric(plain, "task_duration_s").comparisons[0]
    assert task.cuped is not None and task.cuped.applied and task_plain.cuped is None
    assert task.cuped.units_with_pre_period > 0 and task.cuped.variance_reduction is not None
    assert lift_width(task) < lift_width(task_plain)
    assert task.cuped.unadjusted_relative_lift == pytest.approx(task_plain.relative_lift)
    assert task.lift_ci_low is not None and task.lift_ci_high is not None
    assert task.lift_ci_low <= truth.task_time_relative_lift <= task.lift_ci_high
    # The arms' values are as measured, with or without the adjustment.
    assert task.control_value == pytest.approx(task_plain.control_value)
    save = metric(adjusted, "conversion_save").comparisons[0]
    assert save.cuped is not None and save.cuped.applied
    assert lift_width(save) < lift_width(metric(plain, "conversion_save").comparisons[0])


def test_without_pre_period_data_cuped_falls_back_to_the_unadjusted_result(
    experiment: Experiment, chdb_path: Path
) -> None:
    events, _ = simulate(JourneySpec(units=800, task_time_factor=0.8, pre_exposure_share=0.0), 4)
    adjusted = analyze_events(chdb_path, events, experiment, FAST)
    plain = analyze_events(chdb_path, events, experiment, AnalysisConfig(bootstrap_resamples=0, cuped=False))
    task, task_plain = (metric(r, "task_duration_s").comparisons[0] for r in (adjusted, plain))
    assert task.cuped is not None and not task.cuped.applied and task.cuped.units_with_pre_period == 0
    assert task.relative_lift == task_plain.relative_lift and task.p_value == task_plain.p_value


def test_inference_failure_rate_is_a_ratio_metric_and_a_harmed_guardrail_alerts(chdb_path: Path) -> None:
    plan = make_experiment(guardrail_metrics=[{"metric": "inference_failure_rate"}, "conversion_save"])
    spec = JourneySpec(units=3000, completions=True, failure_rate=0.05, failure_rate_lift=0.05)
    events, _ = simulate(spec, 8)
    results = analyze_events(chdb_path, events, plan, FAST)
    failures = results.inference_failures
    assert failures is not None and failures.role == "guardrail"
    arms = {arm.variant: arm for arm in failures.arms}
    completed = events[events["event_type"] == "inference_completed"]
    assert sum(arm.denominator for arm in arms.values()) <= len(completed)
    assert arms["control"].value == pytest.approx(0.05, abs=0.02)
    assert arms["treatment"].value == pytest.approx(0.10, abs=0.02)
    checks = {(g.metric, g.variant): g for g in results.guardrails}
    harmed = checks["inference_failure_rate", "treatment"]
    assert harmed.harmed and harmed.harmful == "increase" and harmed.p_value is not None and harmed.p_value < 0.05
    assert not checks["conversion_save", "treatment"].harmed
    assert any(a.startswith("guardrail inference_failure_rate harmed in treatment: +") for a in results.alerts)
    assert not any("conversion_save" in a for a in results.alerts)


def test_each_comparison_has_its_bayesian_reading_with_the_prior_stated(
    experiment: Experiment, chdb_path: Path
) -> None:
    events, _ = simulate(JourneySpec(units=2000, task_time_factor=0.8), 5)
    results = analyze_events(chdb_path, events, experiment, FAST)
    assert results.bayesian_prior
    task = metric(results, "task_duration_s").comparisons[0]
    assert task.bayesian is not None and task.bayesian.prior == results.bayesian_prior
    # Task time improves when it falls: a 20 % faster treatment almost surely beats control.
    assert task.bayesian.chance_to_beat_control is not None and task.bayesian.chance_to_beat_control > 0.95


def test_the_last_cumulative_point_of_each_metric_is_the_main_result(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=1500, task_time_factor=0.8, pre_period_images=2.0), 6)
    results = analyze_events(chdb_path, events, experiment, FAST)
    main = {m.name: m for m in [*results.conversion, results.score, results.inference_failures] if m is not None}
    assert results.task_duration is not None
    main["task_duration_s"] = results.task_duration.mean
    assert {t.metric for t in results.timeline} == set(main)
    for line in results.timeline:
        last, comparison = line.cumulative[-1], main[line.metric].comparisons[0]
        assert last.relative_lift == pytest.approx(comparison.relative_lift, nan_ok=True), line.metric
        assert last.p_value == pytest.approx(comparison.p_value, nan_ok=True), line.metric
        assert sum(last.units.values()) == sum(e.units for e in results.exposures)
        assert line.by_exposure_day and line.by_exposure_day[0].day == 0


def test_a_broken_client_shows_in_its_browser_and_alerts(experiment: Experiment, chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=6000, srm_in=("browser", "Safari", 0.5)), 9)
    results = analyze_events(chdb_path, events, experiment, FAST)
    assert results.health is not None
    flagged = [d for d in results.health.dimensions if d.alert]
    assert any(d.dimension == "browser" and d.value == "Safari" for d in flagged)
    assert any("sample ratio mismatch in browser = Safari" in a for a in results.alerts)


def test_progress_towards_the_planned_sample_is_reported_only_with_a_plan(chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=1000, task_time_factor=0.9), 10)
    planned = analyze_events(chdb_path, events, make_experiment(plan={"mde": 0.05}), FAST)
    assert planned.progress is not None and planned.progress.metric == "task_duration_s"
    assert planned.progress.units == sum(e.units for e in planned.exposures)
    assert planned.progress.required_units is not None and planned.progress.required_units > 0
    unplanned = analyze_events(chdb_path, events, make_experiment(), FAST)
    assert unplanned.progress is None
