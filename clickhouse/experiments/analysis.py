"""Experiment analysis from the frames the warehouse computed (docs/analytics-definitions.md).

Owns what is done with :class:`ExperimentFrames`: per-arm metrics, the sample-ratio check and the
alerts. Which units, arms and events count is defined once in SQL (the experiment views), every
formula in :mod:`clickhouse.experiments.stats`. Invariant: the units analysed are exactly the views'
clean units; contaminated ones are counted and excluded from every metric and from the sample-ratio
check; an arm's task-time mean is the plain mean of the view's durations (winsorization is opt-in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from clickhouse.experiments.health import health, srm_chi_square
from clickhouse.experiments.planning import progress
from clickhouse.experiments.results import GuardrailCheck, Health, MetricTimeline, Progress
from clickhouse.experiments.stats import (
    FIXED_HORIZON_LABEL,
    SEQUENTIAL_LABEL,
    Comparison,
    Model,
    adjust_comparisons,
    compare,
    finite_or_none,
    ratio_estimate,
    weighted_quantiles,
)
from clickhouse.experiments.stats import (
    AnalysisConfig as AnalysisConfig,
)
from clickhouse.experiments.units import (
    FUNNEL_STEPS,
    MEAN_SCORE,
    TASK_DURATION,
    Members,
    MetricRows,
    members,
    metric_rows,
    unit_values,
)
from funnelstream.experiments.definitions import Experiment, Metric, MetricRole
from funnelstream.experiments.errors import EventsFrameError

UNIT_COLUMNS = ("anonymous_id", "variant", "first_exposure_at", "contaminated")
EVENT_COLUMNS = ("anonymous_id", "event_type", "score")
DURATION_COLUMNS = ("input_id", "anonymous_id", "diff_second")
DIMENSION_COLUMNS = ("anonymous_id", "browser", "os", "device", "source")
CONTAMINATED_COLUMNS = ("anonymous_id", "reason", "variants", "user_ids")
BOOTSTRAP_CHUNK_CELLS = 5_000_000


@dataclass(frozen=True, slots=True)
class ExperimentFrames:
    """What the warehouse computed for one experiment and window (one named query each).

    ``units``: every exposed device, clean or not (``experiment_units``): anonymous_id, variant,
    first_exposure_at, contaminated. ``events``: the funnel events of clean units at or after their
    first exposure (``experiment_events``): anonymous_id, event_type, score. ``durations``: one row
    per image of a clean unit whose first tool click is at or after its first exposure
    (``experiment_task_durations``): input_id, anonymous_id, diff_second (null when the image has no
    counted save: none, or one past the cap).
    """

    units: pd.DataFrame
    events: pd.DataFrame
    durations: pd.DataFrame
    pre_events: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(EVENT_COLUMNS)))
    """``experiment_pre_events``: the same columns as ``events``, for each clean unit's pre-period
    (the ``cuped.lookback_days`` before its first exposure)."""
    pre_durations: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(DURATION_COLUMNS)))
    """``experiment_pre_task_durations``: the same columns as ``durations``, images first clicked in the pre-period."""
    dimensions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(DIMENSION_COLUMNS)))
    """``experiment_unit_dimensions``: one row per exposed unit, the dimensions of its first exposure."""
    contaminated: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CONTAMINATED_COLUMNS)))
    """``experiment_contaminated_units``: one row per contaminated unit, why, its arms and user ids."""


class VariantExposure(Model):
    variant: str
    units: int
    share: float | None
    expected_share: float


class SrmCheck(Model):
    chi2: float | None
    p_value: float | None
    threshold: float
    alert: bool


class Contamination(Model):
    units_in_several_variants: int
    """Exposed units seen in more than one arm (own exposures, experiments map, or a shared user_id)."""
    units_exposed: int
    share: float
    threshold: float
    alert: bool


class ArmValue(Model):
    variant: str
    units: int
    numerator: float
    denominator: float
    value: float | None


class MetricResult(Model):
    name: str
    description: str
    arms: list[ArmValue]
    comparisons: list[Comparison]
    role: MetricRole = "secondary"
    """The experiment's plan: the primary and guardrails are read unadjusted; secondary metrics carry
    ``p_value_adjusted`` (one family, the experiment's ``correction``) and are significant on it."""


class QuantileComparison(Model):
    quantile: float
    variant: str
    control: str
    control_value: float | None
    variant_value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    resamples: int


class TaskDurationResult(Model):
    winsor_quantile: float | None
    """Set only when winsorization was asked for; ``None``: the mean is the plain mean of durations."""
    winsor_cap_s: float | None
    images: dict[str, int]
    """Per arm: images with a counted task time (the summary's ``saved_images``)."""
    images_started: dict[str, int] = Field(default_factory=dict)
    """Per arm: images with a first tool click after exposure, saved or not (the summary's ``images``)."""
    mean: MetricResult
    quantiles: list[QuantileComparison]


class ExperimentResults(Model):
    experiment_key: str
    phase: int
    control: str
    variants: list[str]
    mode: Literal["fixed_horizon", "sequential"]
    mode_label: str
    alpha: float
    analysis_start: datetime | None
    analysis_end: datetime | None
    generated_at: datetime
    exposures: list[VariantExposure]
    srm: SrmCheck
    contamination: Contamination
    conversion: list[MetricResult]
    task_duration: TaskDurationResult | None
    score: MetricResult | None
    inference_failures: MetricResult | None = None
    """Failed inferences per completed inference (``inference_failure_rate``), a ratio metric."""
    guardrails: list[GuardrailCheck] = Field(default_factory=list)
    """Each guardrail metric of each variant: harmed or not; a harmed one is an alert."""
    timeline: list[MetricTimeline] = Field(default_factory=list)
    """Lift over time of every metric: cumulative per day since the start, and per day of exposure."""
    health: Health | None = None
    """Sample-ratio checks per dimension value, exposures per day, units seen in several arms."""
    progress: Progress | None = None
    """Progress towards the sample the experiment's plan needs; ``None`` without a plan."""
    cuped_lookback_days: int | None = None
    """Set when CUPED is on; each comparison's ``cuped`` says what it achieved."""
    bayesian_prior: str | None = None
    """The prior of every comparison's ``bayesian`` reading, in words."""
    alerts: list[str] = Field(default_factory=list)
    """Everything that needs a look, one line each (sample ratio, contamination, harmed guardrails, ...)."""


def _metric(
    name: str,
    description: str,
    units: Members,
    numerator: np.ndarray,
    denominator: np.ndarray,
    experiment: Experiment,
    config: AnalysisConfig,
) -> MetricResult:
    """``numerator`` and ``denominator`` have one value per clean unit, in ``units``' order."""
    estimates = {}
    for key in experiment.variant_keys:
        arm = units.variant == key
        estimates[key] = ratio_estimate(numerator[arm], denominator[arm])
    arms = [
        ArmValue(
            variant=k, units=e.units, numerator=e.numerator, denominator=e.denominator, value=finite_or_none(e.value)
        )
        for k, e in estimates.items()
    ]
    control = experiment.control
    comparisons = [compare(estimates[control], estimates[k], control, k, config) for k in experiment.variant_keys[1:]]
    return MetricResult(name=name, description=description, arms=arms, comparisons=comparisons)


def _unit_resample_weights(
    unit_codes: np.ndarray, n_units: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Per-value weights of a cluster bootstrap: each resample draws units with replacement."""
    draws = rng.integers(0, n_units, size=(resamples, n_units))
    offsets = (np.arange(resamples) * n_units)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * n_units).reshape(resamples, n_units)
    return counts[:, unit_codes]


def _arm_quantiles(
    durations: pd.DataFrame, quantiles: Sequence[float], resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    ordered = durations.sort_values("duration_s", kind="stable")
    values = ordered["duration_s"].to_numpy(float)
    if len(values) == 0:
        return np.full(len(quantiles), np.nan), None
    codes, uniques = pd.factorize(ordered["anonymous_id"])
    point = weighted_quantiles(values, np.ones(len(values)), quantiles)
    if resamples <= 0:
        return point, None
    # Resamples in chunks so the weight matrix stays near BOOTSTRAP_CHUNK_CELLS whatever the size.
    per_chunk = max(1, BOOTSTRAP_CHUNK_CELLS // max(len(values), len(uniques)))
    draws = []
    for start in range(0, resamples, per_chunk):
        count = min(per_chunk, resamples - start)
        weights = _unit_resample_weights(np.asarray(codes), len(uniques), count, rng)
        draws.append(weighted_quantiles(values, weights, quantiles))
    return point, np.concatenate(draws)


# --- the analysis -----------------------------------------------------------------------------


def _check_columns(frames: ExperimentFrames) -> None:
    missing = [
        f"{which}.{column}"
        for which, frame, needed in (
            ("units", frames.units, UNIT_COLUMNS),
            ("events", frames.events, EVENT_COLUMNS),
            ("durations", frames.durations, DURATION_COLUMNS),
        )
        for column in needed
        if column not in frame.columns
    ]
    if missing:
        raise EventsFrameError(missing)


def _contaminated(units: pd.DataFrame) -> pd.Series:
    return units["contaminated"].fillna(False).astype(bool)


def analyze(
    frames: ExperimentFrames,
    experiment: Experiment,
    config: AnalysisConfig | None = None,
    *,
    now: datetime | None = None,
) -> ExperimentResults:
    config = config or AnalysisConfig()
    _check_columns(frames)
    key = experiment.key
    variants = experiment.variant_keys
    # A unit in an arm the definitions do not name (a typo, a removed arm) is in no comparison.
    units = frames.units[frames.units["variant"].isin(variants)]
    dirty = _contaminated(units)
    units_exposed = len(units)
    contaminated_count = int(dirty.sum())
    clean = members(units, variants)
    n_units = len(clean)
    # The queries return clean units' rows only; the codes keep that true of any frame handed in.
    rows = metric_rows(frames.events, frames.durations, clean)

    counts = pd.Series(clean.variant).value_counts().reindex(variants, fill_value=0)
    total = int(counts.sum())
    weights = np.array(experiment.weights, dtype=float)
    exposure_rows = [
        VariantExposure(
            variant=v,
            units=int(counts[v]),
            share=finite_or_none(counts[v] / total) if total else None,
            expected_share=float(w),
        )
        for v, w in zip(variants, weights, strict=True)
    ]
    srm = _srm(counts.to_numpy(float), weights, config)
    share = contaminated_count / units_exposed if units_exposed else 0.0
    contamination = Contamination(
        units_in_several_variants=contaminated_count,
        units_exposed=units_exposed,
        share=share,
        threshold=config.contamination_threshold,
        alert=share > config.contamination_threshold,
    )

    conversion = []
    if Metric.FUNNEL_CONVERSION in experiment.metrics:
        for step, kind in FUNNEL_STEPS:
            name = f"conversion_{step}"
            conversion.append(
                _metric(
                    name,
                    f"share of exposed units with a {kind} after exposure",
                    clean,
                    *unit_values(rows[name], n_units),
                    experiment,
                    config,
                )
            )

    task_duration = None
    if Metric.TASK_DURATION in experiment.metrics:
        task_duration = _task_duration(frames.durations, rows[TASK_DURATION], clean, experiment, config)

    score = None
    if Metric.MEAN_SCORE in experiment.metrics:
        score = _metric(
            MEAN_SCORE,
            "mean score (1-5) per submitted rating",
            clean,
            *unit_values(rows[MEAN_SCORE], n_units),
            experiment,
            config,
        )

    conversion, task_mean, score = _with_roles(
        conversion, task_duration.mean if task_duration else None, score, experiment, config
    )
    if task_duration is not None and task_mean is not None:
        task_duration = task_duration.model_copy(update={"mean": task_mean})

    alerts = []
    if srm.alert:
        alerts.append(f"sample ratio mismatch: chi-square p = {srm.p_value:.2e} < {config.srm_p_threshold}")
    if contamination.alert:
        alerts.append(
            f"{contaminated_count} of {units_exposed} units ({share:.2%}) were seen in more than one variant "
            f"(threshold {config.contamination_threshold:.0%}); they are excluded"
        )
    generated_at = now or datetime.now(UTC)
    by_dimension, dimension_alerts = health(frames, experiment, config, clean)
    alerts += dimension_alerts
    primary = unit_values(rows[experiment.primary_metric], n_units)
    return ExperimentResults(
        experiment_key=key,
        phase=experiment.phase,
        control=experiment.control,
        variants=variants,
        mode="sequential" if config.sequential else "fixed_horizon",
        mode_label=SEQUENTIAL_LABEL if config.sequential else FIXED_HORIZON_LABEL,
        alpha=config.alpha,
        analysis_start=experiment.analysis_start,
        analysis_end=experiment.end,
        generated_at=generated_at,
        exposures=exposure_rows,
        srm=srm,
        contamination=contamination,
        conversion=conversion,
        task_duration=task_duration,
        score=score,
        health=by_dimension,
        progress=progress(clean, *primary, experiment, config, generated_at),
        alerts=alerts,
    )


def _with_roles(
    conversion: list[MetricResult],
    task_mean: MetricResult | None,
    score: MetricResult | None,
    experiment: Experiment,
    config: AnalysisConfig,
) -> tuple[list[MetricResult], MetricResult | None, MetricResult | None]:
    """Each metric with its role; the secondary metrics' comparisons adjusted as one family."""
    metrics = [m for m in (*conversion, task_mean, score) if m is not None]
    roled = [m.model_copy(update={"role": experiment.metric_role(m.name)}) for m in metrics]
    family = [c for m in roled if m.role == "secondary" for c in m.comparisons]
    adjusted = iter(adjust_comparisons(family, experiment.correction, config.alpha))
    done = {
        m.name: m.model_copy(update={"comparisons": [next(adjusted) for _ in m.comparisons]})
        if m.role == "secondary"
        else m
        for m in roled
    }
    return (
        [done[m.name] for m in conversion],
        done[task_mean.name] if task_mean is not None else None,
        done[score.name] if score is not None else None,
    )


def _srm(observed: np.ndarray, weights: np.ndarray, config: AnalysisConfig) -> SrmCheck:
    total = observed.sum()
    if total == 0:
        return SrmCheck(chi2=None, p_value=None, threshold=config.srm_p_threshold, alert=False)
    chi2, p_value = srm_chi_square(observed, weights)
    return SrmCheck(
        chi2=finite_or_none(chi2),
        p_value=finite_or_none(p_value),
        threshold=config.srm_p_threshold,
        alert=p_value < config.srm_p_threshold,
    )


def _task_duration(
    durations: pd.DataFrame, images: MetricRows, clean: Members, experiment: Experiment, config: AnalysisConfig
) -> TaskDurationResult:
    # The arm is the unit's, from the units frame: one source for every metric.
    unit = clean.codes(durations["anonymous_id"])
    started = pd.DataFrame({"variant": clean.variant[unit[unit >= 0]]})
    counted = pd.DataFrame(
        {
            "anonymous_id": images.numerator.unit,
            "variant": clean.variant[images.numerator.unit],
            "duration_s": images.numerator.value,
        }
    )
    cap = None
    description = (
        "seconds per image from first tool click to the save of an inferred result "
        "(plain mean of the capped durations, ratio metric clustered by unit)"
    )
    if config.winsor_quantile is not None and len(counted):
        # Opt-in: one cap over both arms together, so the cap cannot itself create a difference.
        cap = float(np.quantile(images.numerator.value, config.winsor_quantile))
        images = images.capped(cap)
        description += f"; winsorized at {cap:g} s (quantile {config.winsor_quantile} of both arms)"
    mean = _metric(TASK_DURATION, description, clean, *unit_values(images, len(clean)), experiment, config)
    rng = np.random.default_rng(config.seed)
    qs = (0.5, 0.9)
    control = experiment.control
    per_arm = {
        key: _arm_quantiles(counted[counted["variant"] == key], qs, config.bootstrap_resamples, rng)
        for key in experiment.variant_keys
    }
    quantiles = []
    c_point, c_boot = per_arm[control]
    for key in experiment.variant_keys[1:]:
        v_point, v_boot = per_arm[key]
        for i, q in enumerate(qs):
            low = high = math.nan
            if c_boot is not None and v_boot is not None:
                diffs = v_boot[:, i] - c_boot[:, i]
                low, high = np.quantile(diffs, [config.alpha / 2, 1 - config.alpha / 2])
            quantiles.append(
                QuantileComparison(
                    quantile=q,
                    variant=key,
                    control=control,
                    control_value=finite_or_none(c_point[i]),
                    variant_value=finite_or_none(v_point[i]),
                    difference=finite_or_none(v_point[i] - c_point[i]),
                    ci_low=finite_or_none(low),
                    ci_high=finite_or_none(high),
                    resamples=config.bootstrap_resamples,
                )
            )

    def per_variant(frame: pd.DataFrame) -> dict[str, int]:
        counts = frame["variant"].value_counts().reindex(experiment.variant_keys, fill_value=0)
        return {k: int(v) for k, v in counts.items()}

    return TaskDurationResult(
        winsor_quantile=config.winsor_quantile if cap is not None else None,
        winsor_cap_s=cap,
        images=per_variant(counted),
        images_started=per_variant(started),
        mean=mean,
        quantiles=quantiles,
    )
