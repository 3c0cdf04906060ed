"""Experiment results built by hand from known conversions, for the tests of what renders them
(terminal, HTML, the results API): each comparison comes from the real estimator and test
(:func:`clickhouse.experiments.stats.compare`), only the event pipeline is skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from clickhouse.experiments.analysis import (
    ArmValue,
    Contamination,
    ExperimentResults,
    MetricResult,
    SrmCheck,
    VariantExposure,
)
from clickhouse.experiments.stats import (
    FIXED_HORIZON_LABEL,
    SEQUENTIAL_LABEL,
    AnalysisConfig,
    Comparison,
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
