"""Experiment analysis from a frame of enriched events (DESIGN §8).

The input is the rows of the ClickHouse ``events`` table (the fields of
:class:`funnelstream.contract.EnrichedEvent`), so the whole analysis runs in memory and is tested
with seeded simulations. The statistical unit is the exposed device (``anonymous_id``), the unit of
randomisation; every metric is a per-unit numerator over a per-unit denominator, and its variance
comes from the delta method clustered by unit, which stays valid when one unit edits many images.

Rules that keep the answer honest:
- only the current phase counts, and only a unit's events after its first exposure;
- units seen in more than one variant are excluded and counted (alert above 1 %);
- sample-ratio mismatch is tested with a chi-square against the configured weights (alert at p < 0.001);
- task durations are winsorized at a cap computed over both arms together, so the cap cannot
  itself create a difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats

from funnelstream.contract import EventType
from funnelstream.experiments.definitions import Experiment, Metric
from funnelstream.experiments.errors import EventsFrameError
from funnelstream.experiments.stats import (
    SEQUENTIAL_LABEL,
    AnalysisConfig as AnalysisConfig,
    Comparison,
    Model,
    compare,
    finite_or_none,
    ratio_estimate,
    weighted_quantiles,
)

REQUIRED_COLUMNS = ("event_type", "anonymous_id", "event_ts", "experiment_key", "variant")
FUNNEL_STEPS: tuple[tuple[str, EventType], ...] = (
    ("upload", EventType.IMAGE_UPLOADED),
    ("tool", EventType.TOOL_SELECTED),
    ("inference", EventType.INFERENCE_REQUESTED),
    ("save", EventType.IMAGE_SAVED),
    ("score", EventType.SCORE_SUBMITTED),
)
BOOTSTRAP_CHUNK_CELLS = 5_000_000


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
    winsor_cap_s: float | None
    images: dict[str, int]
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
    alerts: list[str] = Field(default_factory=list)


def _metric(
    name: str,
    description: str,
    per_unit: pd.DataFrame,
    experiment: Experiment,
    config: AnalysisConfig,
) -> MetricResult:
    """``per_unit`` has one row per exposed unit: variant, numerator, denominator."""
    estimates = {}
    for key in experiment.variant_keys:
        arm = per_unit[per_unit["variant"] == key]
        estimates[key] = ratio_estimate(arm["numerator"].to_numpy(float), arm["denominator"].to_numpy(float))
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
    ordered = durations.sort_values("duration_s")
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


def _check_columns(events: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise EventsFrameError(missing)


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def _map_variant(events: pd.DataFrame, key: str) -> pd.Series | None:
    """The variant an event says it was seen in, from the ``experiments`` map."""
    if "experiment_variant" in events.columns:
        return events["experiment_variant"]
    if "experiments" not in events.columns:
        return None
    return events["experiments"].map(lambda m: m.get(key) if isinstance(m, dict) else None)


def analyze(
    events: pd.DataFrame,
    experiment: Experiment,
    config: AnalysisConfig | None = None,
    *,
    now: datetime | None = None,
) -> ExperimentResults:
    config = config or AnalysisConfig()
    _check_columns(events)
    key = experiment.key
    variants = experiment.variant_keys
    start, end = experiment.analysis_start, experiment.end
    frame = events.copy()
    frame["event_ts"] = _utc(frame["event_ts"])
    if start is not None:
        frame = frame[frame["event_ts"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["event_ts"] < pd.Timestamp(end)]

    # Integer unit codes: every join, group and membership test below runs on them, not on strings.
    frame["anonymous_id"] = pd.factorize(frame["anonymous_id"])[0]
    if "input_id" in frame.columns:
        codes = pd.factorize(frame["input_id"])[0]
        frame["input_id"] = pd.Series(codes, index=frame.index).where(codes >= 0)
    is_exposure = (frame["event_type"] == str(EventType.EXPERIMENT_EXPOSURE)) & (frame["experiment_key"] == key)
    exposures = frame.loc[is_exposure & frame["variant"].isin(variants), ["anonymous_id", "variant", "event_ts"]]
    first = exposures.groupby("anonymous_id")["event_ts"].min().rename("first_exposure")

    # Every variant a unit was seen in: its exposures, and the experiments map on its later events.
    seen = [exposures[["anonymous_id", "variant"]]]
    map_variant = _map_variant(frame, key)
    if map_variant is not None:
        tagged = frame.assign(_seen=map_variant)[["anonymous_id", "_seen", "event_ts"]].dropna(subset=["_seen"])
        tagged = tagged[tagged["_seen"].isin(variants)].join(first, on="anonymous_id", how="inner")
        tagged = tagged[tagged["event_ts"] >= tagged["first_exposure"]]
        seen.append(tagged[["anonymous_id", "_seen"]].rename(columns={"_seen": "variant"}))
    seen_frame = pd.concat(seen, ignore_index=True).drop_duplicates()
    variants_per_unit = seen_frame.groupby("anonymous_id")["variant"].nunique()
    contaminated = variants_per_unit[variants_per_unit > 1].index
    units_exposed = len(variants_per_unit)
    clean = (
        exposures[~exposures["anonymous_id"].isin(contaminated)]
        .drop_duplicates("anonymous_id")[["anonymous_id", "variant"]]
        .join(first, on="anonymous_id")
        .reset_index(drop=True)
    )

    counts = clean["variant"].value_counts().reindex(variants, fill_value=0)
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
    share = len(contaminated) / units_exposed if units_exposed else 0.0
    contamination = Contamination(
        units_in_several_variants=len(contaminated),
        units_exposed=units_exposed,
        share=share,
        threshold=config.contamination_threshold,
        alert=share > config.contamination_threshold,
    )

    # Only a clean unit's events at or after its first exposure count.
    after = frame.merge(clean, on="anonymous_id", how="inner", suffixes=("", "_assigned"))
    after = after[after["event_ts"] >= after["first_exposure"]]
    units = clean[["anonymous_id", "variant"]]

    conversion = []
    if Metric.FUNNEL_CONVERSION in experiment.metrics:
        for step, event_type in FUNNEL_STEPS:
            reached = after.loc[after["event_type"] == str(event_type), "anonymous_id"].unique()
            per_unit = units.assign(numerator=units["anonymous_id"].isin(reached).astype(float), denominator=1.0)
            conversion.append(
                _metric(
                    f"conversion_{step}",
                    f"share of exposed units with a {event_type} after exposure",
                    per_unit,
                    experiment,
                    config,
                )
            )

    task_duration = None
    if Metric.TASK_DURATION in experiment.metrics:
        task_duration = _task_duration(frame, clean, units, experiment, config)

    score = None
    if Metric.MEAN_SCORE in experiment.metrics and "score" in after.columns:
        scores = after[after["event_type"] == str(EventType.SCORE_SUBMITTED)].dropna(subset=["score"])
        sums = scores.groupby("anonymous_id")["score"].agg(["sum", "count"])
        per_unit = units.join(sums, on="anonymous_id").fillna({"sum": 0.0, "count": 0.0})
        per_unit = per_unit.rename(columns={"sum": "numerator", "count": "denominator"})
        score = _metric("mean_score", "mean score (1-5) per submitted rating", per_unit, experiment, config)

    alerts = []
    if srm.alert:
        alerts.append(f"sample ratio mismatch: chi-square p = {srm.p_value:.2e} < {config.srm_p_threshold}")
    if contamination.alert:
        alerts.append(
            f"{contamination.units_in_several_variants} of {units_exposed} units ({share:.2%}) were seen in more "
            f"than one variant (threshold {config.contamination_threshold:.0%}); they are excluded"
        )
    return ExperimentResults(
        experiment_key=key,
        phase=experiment.phase,
        control=experiment.control,
        variants=variants,
        mode="sequential" if config.sequential else "fixed_horizon",
        mode_label=SEQUENTIAL_LABEL if config.sequential else "fixed horizon: read once, at the planned sample size",
        alpha=config.alpha,
        analysis_start=start,
        analysis_end=end,
        generated_at=now or datetime.now(UTC),
        exposures=exposure_rows,
        srm=srm,
        contamination=contamination,
        conversion=conversion,
        task_duration=task_duration,
        score=score,
        alerts=alerts,
    )


def _srm(observed: np.ndarray, weights: np.ndarray, config: AnalysisConfig) -> SrmCheck:
    total = observed.sum()
    if total == 0:
        return SrmCheck(chi2=None, p_value=None, threshold=config.srm_p_threshold, alert=False)
    expected = weights / weights.sum() * total
    chi2, p_value = stats.chisquare(observed, f_exp=expected)
    return SrmCheck(
        chi2=finite_or_none(chi2),
        p_value=finite_or_none(p_value),
        threshold=config.srm_p_threshold,
        alert=p_value < config.srm_p_threshold,
    )


def image_durations(frame: pd.DataFrame, clean: pd.DataFrame) -> pd.DataFrame:
    """Seconds from an image's first tool click to its first save after that click.

    An image counts only when its first tool click came at or after its unit's first exposure:
    an image started before the unit saw the variant measures the old experience.
    """
    if "input_id" not in frame.columns:
        return pd.DataFrame(columns=["input_id", "anonymous_id", "variant", "duration_s"])
    tools = frame[(frame["event_type"] == str(EventType.TOOL_SELECTED)) & frame["input_id"].notna()]
    first_tool = (
        tools.sort_values("event_ts")
        .drop_duplicates("input_id")[["input_id", "anonymous_id", "event_ts"]]
        .rename(columns={"event_ts": "tool_ts"})
    )
    first_tool = first_tool.merge(clean, on="anonymous_id", how="inner")
    first_tool = first_tool[first_tool["tool_ts"] >= first_tool["first_exposure"]]
    saves = frame.loc[frame["event_type"] == str(EventType.IMAGE_SAVED), ["input_id", "event_ts"]]
    joined = first_tool.merge(saves, on="input_id", how="inner")
    joined = joined[joined["event_ts"] >= joined["tool_ts"]]
    first_save = joined.groupby("input_id", sort=False).agg(
        anonymous_id=("anonymous_id", "first"),
        variant=("variant", "first"),
        tool_ts=("tool_ts", "first"),
        save_ts=("event_ts", "min"),
    )
    first_save["duration_s"] = (first_save["save_ts"] - first_save["tool_ts"]).dt.total_seconds()
    return first_save.reset_index()[["input_id", "anonymous_id", "variant", "duration_s"]]


def _task_duration(
    frame: pd.DataFrame, clean: pd.DataFrame, units: pd.DataFrame, experiment: Experiment, config: AnalysisConfig
) -> TaskDurationResult:
    durations = image_durations(frame, clean)
    cap = None
    capped = durations["duration_s"].astype(float)
    if config.winsor_quantile is not None and len(durations):
        cap = float(np.quantile(capped.to_numpy(), config.winsor_quantile))
        capped = capped.clip(upper=cap)
    per_image = durations.assign(capped=capped)
    sums = per_image.groupby("anonymous_id")["capped"].agg(["sum", "count"])
    per_unit = units.join(sums, on="anonymous_id").fillna({"sum": 0.0, "count": 0.0})
    per_unit = per_unit.rename(columns={"sum": "numerator", "count": "denominator"})
    mean = _metric(
        "task_duration_s",
        "seconds per image from first tool click to save (winsorized, ratio metric clustered by unit)",
        per_unit,
        experiment,
        config,
    )
    rng = np.random.default_rng(config.seed)
    qs = (0.5, 0.9)
    control = experiment.control
    per_arm = {
        key: _arm_quantiles(durations[durations["variant"] == key], qs, config.bootstrap_resamples, rng)
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
    images = durations["variant"].value_counts().reindex(experiment.variant_keys, fill_value=0)
    return TaskDurationResult(
        winsor_quantile=config.winsor_quantile,
        winsor_cap_s=cap,
        images={k: int(v) for k, v in images.items()},
        mean=mean,
        quantiles=quantiles,
    )
