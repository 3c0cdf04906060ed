"""Experiment results built by hand from known conversions, for the tests of what renders them
(terminal, HTML, the results API, the gauges): each comparison comes from the real estimator and test
(:func:`clickhouse.experiments.stats.compare`), only the event pipeline is skipped; CUPED, Bayesian,
guardrail, timeline, health and progress figures are set by hand on the models (:func:`full_results`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from clickhouse.experiments.analysis import (
    ArmValue,
    Contamination,
    ExperimentResults,
    MetricResult,
    SrmCheck,
    VariantExposure,
)
from clickhouse.experiments.results import (
    ContaminatedUnit,
    DimensionSrm,
    ExposureDay,
    GuardrailCheck,
    Health,
    MetricTimeline,
    Progress,
    TimelinePoint,
)
from clickhouse.experiments.stats import (
    FIXED_HORIZON_LABEL,
    SEQUENTIAL_LABEL,
    AnalysisConfig,
    BayesianComparison,
    Comparison,
    CupedSummary,
    RatioEstimate,
    compare,
    finite_or_none,
    ratio_estimate,
)
from funnelstream.experiments.definitions import MetricRole


def proportion(successes: int, units: int) -> RatioEstimate:
    return ratio_estimate(np.r_[np.ones(successes), np.zeros(units - successes)], np.ones(units))


def conversion(
    name: str,
    control: tuple[int, int],
    treatment: tuple[int, int],
    role: MetricRole = "secondary",
    sequential: bool = False,
) -> MetricResult:
    """A conversion metric: ``control`` and ``treatment`` are (converted units, units)."""
    arms = {"control": proportion(*control), "treatment": proportion(*treatment)}
    config = AnalysisConfig(bootstrap_resamples=0, sequential=sequential)
    return MetricResult(
        name=name,
        description=f"share of units that reached {name}",
        arms=[
            ArmValue(variant=k, units=e.units, numerator=e.numerator, denominator=e.denominator, value=e.value)
            for k, e in arms.items()
        ],
        comparisons=[compare(arms["control"], arms["treatment"], "control", "treatment", config)],
        role=role,
    )


def with_comparisons(metric: MetricResult, comparisons: list[Comparison]) -> MetricResult:
    return metric.model_copy(update={"comparisons": comparisons})


def results(metrics: list[MetricResult], sequential: bool = False, units: int = 800) -> ExperimentResults:
    half = units // 2
    return ExperimentResults(
        experiment_key="segmentation_tool",
        phase=1,
        control="control",
        variants=["control", "treatment"],
        mode="sequential" if sequential else "fixed_horizon",
        mode_label=SEQUENTIAL_LABEL if sequential else FIXED_HORIZON_LABEL,
        alpha=0.05,
        analysis_start=datetime(2026, 11, 1, tzinfo=UTC),
        analysis_end=None,
        generated_at=datetime(2026, 11, 8, tzinfo=UTC),
        exposures=[
            VariantExposure(variant=v, units=half, share=finite_or_none(0.5), expected_share=0.5)
            for v in ("control", "treatment")
        ],
        srm=SrmCheck(chi2=0.0, p_value=1.0, threshold=0.001, alert=False),
        contamination=Contamination(
            units_in_several_variants=0, units_exposed=units, share=0.0, threshold=0.01, alert=False
        ),
        conversion=metrics,
        task_duration=None,
        score=None,
    )


def adjusted(comparison: Comparison, variance_reduction: float | None, chance: float, loss: float) -> Comparison:
    """``comparison`` with a CUPED summary and a Bayesian reading, as the analysis would attach them."""
    applied = variance_reduction is not None
    return comparison.model_copy(
        update={
            "cuped": CupedSummary(
                applied=applied,
                theta=0.8 if applied else None,
                lookback_days=14,
                units_with_pre_period=612 if applied else 0,
                variance_reduction=variance_reduction,
                unadjusted_relative_lift=comparison.relative_lift,
                unadjusted_lift_ci_low=comparison.lift_ci_low,
                unadjusted_lift_ci_high=comparison.lift_ci_high,
            ),
            "bayesian": BayesianComparison(
                chance_to_beat_control=chance,
                expected_loss=loss,
                control_expected_loss=loss * 3,
                lift_mean=comparison.relative_lift,
                lift_ci_low=comparison.lift_ci_low,
                lift_ci_high=comparison.lift_ci_high,
                prior=FLAT_PRIOR,
            ),
        }
    )


FLAT_PRIOR = "flat (improper) prior on the relative lift"
START = datetime(2026, 11, 1, tzinfo=UTC)


def timeline_points(lifts: list[float], half_width: float, by_exposure_day: bool = False) -> list[TimelinePoint]:
    return [
        TimelinePoint(
            day=day,
            date=None if by_exposure_day else (START + timedelta(days=day)).date(),
            variant="treatment",
            units={"control": 100 * (day + 1), "treatment": 100 * (day + 1)},
            control_value=0.1,
            variant_value=0.1 * (1 + lift),
            relative_lift=lift,
            lift_ci_low=lift - half_width,
            lift_ci_high=lift + half_width,
            p_value=0.01 if abs(lift) > half_width else 0.4,
            significant=abs(lift) > half_width,
        )
        for day, lift in enumerate(lifts)
    ]


def full_results(contaminated_id: str = "device-<b>&1", harmed: bool = True) -> ExperimentResults:
    """Every figure of the experiment engine: CUPED and Bayesian on each comparison, guardrails (one
    harmed), lift over time, health by dimension (Safari mismatched) and progress."""
    save = conversion("conversion_save", (100, 1000), (136, 1000), role="guardrail")
    upload = conversion("conversion_upload", (20, 400), (36, 400))
    failures = conversion("inference_failure_rate", (50, 1000), (90, 1000), role="guardrail")
    metrics = [
        with_comparisons(save, [adjusted(save.comparisons[0], 0.36, 0.998, 0.0001)]),
        with_comparisons(upload, [adjusted(upload.comparisons[0], None, 0.97, 0.0021)]),
    ]
    base = results(metrics, units=2000)
    guardrails = [
        GuardrailCheck(
            metric="inference_failure_rate",
            variant="treatment",
            harmful="increase",
            threshold=0.02,
            relative_lift=0.8,
            p_value=1e-4 if harmed else 0.4,
            harmed=harmed,
        ),
        GuardrailCheck(
            metric="conversion_save",
            variant="treatment",
            harmful="decrease",
            threshold=0.0,
            relative_lift=0.36,
            p_value=0.99,
            harmed=False,
        ),
    ]
    health = Health(
        dimensions=[
            DimensionSrm(
                dimension="browser",
                value=browser,
                units={"control": 500, "treatment": treated},
                shares={"control": 500 / (500 + treated), "treatment": treated / (500 + treated)},
                expected_shares={"control": 0.5, "treatment": 0.5},
                chi2=chi2,
                p_value=p,
                alert=p < 0.001,
            )
            for browser, treated, chi2, p in (("Chrome", 498, 0.004, 0.95), ("Safari", 380, 16.4, 5.1e-5))
        ],
        exposures_per_day=[
            ExposureDay(date=(START + timedelta(days=d)).date(), units={"control": 140, "treatment": 130})
            for d in range(7)
        ],
        contaminated_by_reason={"device": 3, "user": 2},
        contaminated_units=[
            ContaminatedUnit(
                anonymous_id=contaminated_id, reason="user", variants=["control", "treatment"], user_ids=["u<1>"]
            )
        ],
    )
    return base.model_copy(
        update={
            "inference_failures": with_comparisons(failures, [adjusted(failures.comparisons[0], 0.1, 0.0, 0.8)]),
            "task_duration": None,
            "score": None,
            "guardrails": guardrails,
            "timeline": [
                MetricTimeline(
                    metric="conversion_save",
                    cumulative=timeline_points([0.5, 0.4, 0.38, 0.36], 0.2),
                    by_exposure_day=timeline_points([0.6, 0.3, 0.1], 0.25, by_exposure_day=True),
                )
            ],
            "health": health,
            "progress": Progress(
                metric="task_duration_s",
                mde=0.05,
                power=0.8,
                required_units=8000,
                units=2000,
                share=0.25,
                units_per_day=285.7,
                days_elapsed=7.0,
                days_remaining=21.0,
            ),
            "cuped_lookback_days": 14,
            "bayesian_prior": FLAT_PRIOR,
            "alerts": ["sample ratio mismatch in browser = Safari (p = 5.1e-05)"],
        }
    )
