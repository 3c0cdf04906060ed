"""Experiment analysis from the frames the warehouse computed (docs/analytics-definitions.md).

Owns what is done with :class:`ExperimentFrames`: every metric's comparisons (per-unit values from
:mod:`~clickhouse.experiments.units`, CUPED, Bayesian reading), guardrails, roles, the sample-ratio
check and the alerts; lift over time, health and progress come from their modules. Invariant: only
the views' clean units are analysed, and every comparison, over time too, goes through one estimator.
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

from clickhouse.experiments.bayesian import Prior, bayesian_compare
from clickhouse.experiments.health import health as compute_health
from clickhouse.experiments.health import srm_chi_square
from clickhouse.experiments.planning import metric_names
from clickhouse.experiments.planning import progress as planned_progress
from clickhouse.experiments.regression import MetricKind, UnitValues, estimate_pair
from clickhouse.experiments.results import GuardrailCheck, Health, MetricTimeline, Progress
from clickhouse.experiments.stats import (
    FIXED_HORIZON_LABEL,
    SEQUENTIAL_LABEL,
    Comparison,
    Model,
    adjust_comparisons,
    compare,
    finite_or_none,
    harm_check,
    ratio_estimate,
    weighted_quantiles,
)
from clickhouse.experiments.stats import (
    AnalysisConfig as AnalysisConfig,
)
from clickhouse.experiments.timeline import timeline as lift_over_time
from clickhouse.experiments.units import (
    FUNNEL_STEPS,
    INFERENCE_FAILURE_RATE,
    MEAN_SCORE,
    TASK_DURATION,
    Members,
    MetricRows,
    members,
    metric_rows,
    unit_values,
)
from funnelstream.experiments.definitions import GOOD_DIRECTION, Experiment, MetricRole
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


KINDS: dict[str, MetricKind] = {f"conversion_{step}": "proportion" for step, _ in FUNNEL_STEPS}
"""Conversions are proportions (denominator 1 per unit); every other metric is a ratio."""
DESCRIPTIONS = {
    **{f"conversion_{step}": f"share of exposed units with a {kind} after exposure" for step, kind in FUNNEL_STEPS},
    TASK_DURATION: (
        "seconds per image from first tool click to the save of an inferred result "
        "(plain mean of the capped durations, ratio metric clustered by unit)"
    ),
    MEAN_SCORE: "mean score (1-5) per submitted rating",
    INFERENCE_FAILURE_RATE: "share of completed inferences that failed (ratio metric clustered by unit)",
}


@dataclass(frozen=True, slots=True)
class _Estimator:
    """Every comparison of the analysis, the main result's and each lift-over-time point's alike:
    one metric's per-unit values, the arms' units (optionally a subset), CUPED when it is on."""

    clean: Members
    experiment: Experiment
    config: AnalysisConfig
    pre: dict[str, tuple[np.ndarray, np.ndarray]] | None
    """Per metric: each unit's pre-period numerator and denominator; ``None`` when CUPED is off."""
    arms: dict[str, np.ndarray]
    prior: Prior

    @property
    def lookback_days(self) -> int:
        return self.experiment.cuped.lookback_days if self.pre is not None else 0

    def _values(self, name: str, numerator: np.ndarray, denominator: np.ndarray, arm: np.ndarray) -> UnitValues:
        # One index array, then takes: a boolean mask per array costs several times more at a million units.
        rows = np.flatnonzero(arm)
        if self.pre is None:
            return UnitValues(numerator.take(rows), denominator.take(rows))
        pre_numerator, pre_denominator = self.pre[name]
        return UnitValues(
            numerator.take(rows), denominator.take(rows), pre_numerator.take(rows), pre_denominator.take(rows)
        )

    def comparisons(
        self,
        name: str,
        numerator: np.ndarray,
        denominator: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        bayesian: bool = False,
    ) -> list[Comparison]:
        """Each variant against the control over the units in ``mask`` (default: all), with the
        Bayesian reading of the same estimates when ``bayesian``."""
        control = self.experiment.control
        arm = {k: a if mask is None else a & mask for k, a in self.arms.items()}
        base = self._values(name, numerator, denominator, arm[control])
        kind = KINDS.get(name, "ratio")
        out = []
        for key in self.experiment.variant_keys[1:]:
            values = self._values(name, numerator, denominator, arm[key])
            # An arm of fewer than two units (an early point over time) has no variance to adjust.
            adjust = self.pre is not None and min(len(base.numerator), len(values.numerator)) > 1
            pair = estimate_pair(base, values, kind, adjust)
            comparison = compare(*pair, control, key, self.config, lookback_days=self.lookback_days)
            if bayesian:
                reading = bayesian_compare(*pair, self.prior, GOOD_DIRECTION[name], self.config.alpha)
                comparison = comparison.model_copy(update={"bayesian": reading})
            out.append(comparison)
        return out

    def metric(self, name: str, numerator: np.ndarray, denominator: np.ndarray, description: str) -> MetricResult:
        """``numerator`` and ``denominator`` have one value per clean unit, in the members' order."""
        arms = []
        for key, arm in self.arms.items():
            e = ratio_estimate(numerator[arm], denominator[arm])
            arms.append(
                ArmValue(
                    variant=key,
                    units=e.units,
                    numerator=e.numerator,
                    denominator=e.denominator,
                    value=finite_or_none(e.value),
                )
            )
        comparisons = self.comparisons(name, numerator, denominator, bayesian=True)
        return MetricResult(name=name, description=description, arms=arms, comparisons=comparisons)


def _unit_resample_counts(n_units: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Per resample, how often each unit is drawn: a cluster bootstrap draws units with replacement."""
    draws = rng.integers(0, n_units, size=(resamples, n_units))
    offsets = (np.arange(resamples) * n_units)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n_units).reshape(resamples, n_units)


@dataclass(frozen=True, slots=True)
class _RankWindow:
    """The sorted values' ranks [low, high) around one quantile's point rank, and each unit's count
    of values below ``low``: a resample's cumulative weight is only needed inside the window."""

    quantile: float
    low: int
    high: int
    below: np.ndarray
    codes: np.ndarray

    @classmethod
    def around(cls, quantile: float, codes: np.ndarray, n_units: int, width_sd: float = 12.0) -> _RankWindow:
        m = len(codes)
        rank = int(np.ceil(quantile * m)) - 1
        # The resampled rank's spread grows with the images per unit (clustering); 12 sd is never reached in practice.
        half = int(width_sd * math.sqrt(quantile * (1 - quantile) * m * max(1.0, m / n_units))) + 64
        low, high = max(0, rank - half), min(m, rank + half)
        below = np.bincount(codes[:low], minlength=n_units).astype(float)
        return cls(quantile, low, high, below, codes[low:high])

    def positions(self, counts: np.ndarray, weights: np.ndarray, total: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Per resample, the inverted-CDF position of :func:`weighted_quantiles` (the count of values
        whose cumulative weight is below the target), exactly: integer weights summed in floats.
        ``weights``: ``counts`` as floats."""
        base = weights @ self.below
        cumulative = base[:, None] + np.cumsum(counts[:, self.codes], axis=1)
        target = self.quantile * total
        position = self.low + (cumulative < target[:, None]).sum(axis=1)
        outside = np.flatnonzero(~((base < target) & (cumulative[:, -1] >= target)))
        if len(outside):
            full = np.cumsum(counts[outside][:, codes], axis=1)
            position[outside] = (full < self.quantile * full[:, -1:]).sum(axis=1)
        return np.asarray(position)


def _arm_quantiles(
    seconds: np.ndarray, units: np.ndarray, quantiles: Sequence[float], resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """``seconds`` of one arm's images and each image's unit code: the point quantiles and, per
    resample of units, the same quantiles (:func:`weighted_quantiles`' rule, weights = draws)."""
    order = np.argsort(seconds, kind="stable")
    values = seconds[order]
    if len(values) == 0:
        return np.full(len(quantiles), np.nan), None
    factorized, uniques = pd.factorize(units[order])
    codes, n_units = np.asarray(factorized), len(uniques)
    point = weighted_quantiles(values, np.ones(len(values)), quantiles)
    if resamples <= 0:
        return point, None
    per_unit = np.bincount(codes, minlength=n_units).astype(float)
    windows = [_RankWindow.around(q, codes, n_units) for q in quantiles]
    # Resamples in chunks so the count matrix stays near BOOTSTRAP_CHUNK_CELLS whatever the size.
    per_chunk = max(1, BOOTSTRAP_CHUNK_CELLS // max(len(values), n_units))
    draws = []
    for start in range(0, resamples, per_chunk):
        counts = _unit_resample_counts(n_units, min(per_chunk, resamples - start), rng)
        weights = counts.astype(float)
        total = weights @ per_unit
        positions = np.stack([w.positions(counts, weights, total, codes) for w in windows], axis=-1)
        draws.append(values[np.minimum(positions, len(values) - 1)])
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

    now = now or datetime.now(UTC)
    adjust = config.cuped and experiment.cuped.enabled
    cap = _winsor_cap(rows[TASK_DURATION], config)
    analysed = metric_names(experiment)
    post = _capped(rows, cap)
    pre = None
    if adjust:
        pre_rows = _capped(metric_rows(frames.pre_events, frames.pre_durations, clean), cap)
        pre = {name: unit_values(pre_rows[name], n_units) for name in analysed}
    arms = {k: clean.variant == k for k in variants}
    estimator = _Estimator(clean, experiment, config, pre, arms, Prior.from_config(config))
    values = {name: unit_values(post[name], n_units) for name in analysed}
    metrics = {name: estimator.metric(name, *values[name], _description(name, cap, config)) for name in analysed}
    metrics = _with_roles(metrics, experiment, config)

    task_duration = None
    if TASK_DURATION in metrics:
        task_duration = _task_duration(
            frames.durations, rows[TASK_DURATION], cap, metrics[TASK_DURATION], clean, arms, experiment, config
        )
    guardrails = _guardrails(metrics, experiment, config)

    timeline: list[MetricTimeline] = []
    if config.timeline:
        timeline = lift_over_time(
            clean,
            {name: post[name] for name in analysed},
            estimator.comparisons,
            experiment.analysis_start,
            experiment.end,
        )
    health, health_alerts = compute_health(frames, experiment, config, clean)
    primary = experiment.primary_metric
    progress = planned_progress(clean, *values[primary], experiment, config, now) if primary in values else None

    alerts = []
    if srm.alert:
        alerts.append(f"sample ratio mismatch: chi-square p = {srm.p_value:.2e} < {config.srm_p_threshold}")
    if contamination.alert:
        alerts.append(
            f"{contaminated_count} of {units_exposed} units ({share:.2%}) were seen in more than one variant "
            f"(threshold {config.contamination_threshold:.0%}); they are excluded"
        )
    alerts += [_guardrail_alert(g) for g in guardrails if g.harmed]
    alerts += health_alerts
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
        generated_at=now,
        exposures=exposure_rows,
        srm=srm,
        contamination=contamination,
        conversion=[metrics[n] for n in analysed if n.startswith("conversion_")],
        task_duration=task_duration,
        score=metrics.get(MEAN_SCORE),
        inference_failures=metrics.get(INFERENCE_FAILURE_RATE),
        guardrails=guardrails,
        timeline=timeline,
        health=health,
        progress=progress,
        cuped_lookback_days=experiment.cuped.lookback_days if adjust else None,
        bayesian_prior=estimator.prior.describe(),
        alerts=alerts,
    )


def _with_roles(
    metrics: dict[str, MetricResult], experiment: Experiment, config: AnalysisConfig
) -> dict[str, MetricResult]:
    """Each metric with its role; the secondary metrics' comparisons adjusted as one family."""
    roled = [m.model_copy(update={"role": experiment.metric_role(m.name)}) for m in metrics.values()]
    family = [c for m in roled if m.role == "secondary" for c in m.comparisons]
    adjusted = iter(adjust_comparisons(family, experiment.correction, config.alpha))
    return {
        m.name: m.model_copy(update={"comparisons": [next(adjusted) for _ in m.comparisons]})
        if m.role == "secondary"
        else m
        for m in roled
    }


def _guardrails(
    metrics: dict[str, MetricResult], experiment: Experiment, config: AnalysisConfig
) -> list[GuardrailCheck]:
    """Each declared guardrail against each variant: harmed when significantly past its threshold."""
    checks = []
    for guardrail in experiment.guardrail_metrics:
        metric = metrics.get(guardrail.metric)
        if metric is None:
            continue
        harmful = guardrail.harmful_direction
        for comparison in metric.comparisons:
            p_value, harmed = harm_check(comparison, harmful, guardrail.threshold, config.alpha)
            checks.append(
                GuardrailCheck(
                    metric=guardrail.metric,
                    variant=comparison.variant,
                    harmful=harmful,
                    threshold=guardrail.threshold,
                    relative_lift=comparison.relative_lift,
                    p_value=p_value,
                    harmed=harmed,
                )
            )
    return checks


def _guardrail_alert(check: GuardrailCheck) -> str:
    lift = "n/a" if check.relative_lift is None else f"{check.relative_lift * 100:+.1f} %"
    p_value = "n/a" if check.p_value is None else f"{check.p_value:.2g}"
    return (
        f"guardrail {check.metric} harmed in {check.variant}: {lift} "
        f"(threshold {check.threshold * 100:g} %, p = {p_value})"
    )


def _winsor_cap(images: MetricRows, config: AnalysisConfig) -> float | None:
    """Opt-in: one cap over both arms together, so the cap cannot itself create a difference."""
    if config.winsor_quantile is None or not len(images.numerator):
        return None
    return float(np.quantile(images.numerator.value, config.winsor_quantile))


def _capped(rows: dict[str, MetricRows], cap: float | None) -> dict[str, MetricRows]:
    """Task time winsorized at ``cap``, in the main result, its covariate and over time alike."""
    if cap is None:
        return rows
    return {**rows, TASK_DURATION: rows[TASK_DURATION].capped(cap)}


def _description(name: str, cap: float | None, config: AnalysisConfig) -> str:
    if name == TASK_DURATION and cap is not None:
        return DESCRIPTIONS[name] + f"; winsorized at {cap:g} s (quantile {config.winsor_quantile} of both arms)"
    return DESCRIPTIONS[name]


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
    durations: pd.DataFrame,
    images: MetricRows,
    cap: float | None,
    mean: MetricResult,
    clean: Members,
    arms: dict[str, np.ndarray],
    experiment: Experiment,
    config: AnalysisConfig,
) -> TaskDurationResult:
    """``images``: the metric's rows before any cap; the quantiles are of the durations as measured."""
    # The arm is the unit's, from the units frame: one source for every metric.
    unit = clean.codes(durations["anonymous_id"])
    started = unit[unit >= 0]
    counted, seconds = images.numerator.unit, images.numerator.value
    rng = np.random.default_rng(config.seed)
    qs = (0.5, 0.9)
    control = experiment.control
    per_arm, images_counted, images_started = {}, {}, {}
    for key in experiment.variant_keys:
        in_arm = arms[key][counted]
        images_counted[key] = int(np.count_nonzero(in_arm))
        images_started[key] = int(np.count_nonzero(arms[key][started]))
        per_arm[key] = _arm_quantiles(seconds[in_arm], counted[in_arm], qs, config.bootstrap_resamples, rng)
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

    return TaskDurationResult(
        winsor_quantile=config.winsor_quantile if cap is not None else None,
        winsor_cap_s=cap,
        images=images_counted,
        images_started=images_started,
        mean=mean,
        quantiles=quantiles,
    )
