"""Experiment planning: the units and days a minimum detectable effect needs, and progress towards them.

Owns the plan of every metric (baseline, per-unit standard deviation, required units and days,
reachable MDE) and the progress of the primary metric. Invariant: each metric's per-unit values come
from :mod:`clickhouse.experiments.units` (the analysis's own definition), pooled over arms, and its
variance is the delta-method one the analysis tests with; the sample sizes are :mod:`~clickhouse.experiments.power`'s.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np

from clickhouse.experiments.power import reachable_mde, required_units
from clickhouse.experiments.results import MetricPlan, PlanResult, Progress
from clickhouse.experiments.stats import AnalysisConfig, finite_or_none, ratio_estimate
from clickhouse.experiments.units import Members, members, metric_rows, unit_values
from funnelstream.experiments.definitions import METRIC_SOURCE, Experiment

if TYPE_CHECKING:
    # analysis.py calls progress(); the frames' class is needed for annotations only.
    from clickhouse.experiments.analysis import ExperimentFrames

Source = Literal["experiment", "recent_traffic"]
DAY = np.timedelta64(86_400_000, "ms")


def metric_names(experiment: Experiment) -> list[str]:
    """Every metric the experiment's analysis reports, in the report's order."""
    return [name for name, source in METRIC_SOURCE.items() if source in experiment.metrics]


def per_unit_moments(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float]:
    """The metric's value and the variance of one unit's linearized contribution
    ``(x - r y) / mean(y)``: the estimate's delta-method variance times the units, so that a sample
    of n units has variance ``variance / n``. NaN where there is no denominator or fewer than two units."""
    estimate = ratio_estimate(numerator, denominator)
    return estimate.value, estimate.variance * estimate.units


def observed_days(first_exposure: np.ndarray) -> float | None:
    """Days between the first and the last first exposure (datetime64[ms]); ``None`` under a minute
    apart, when no arrival rate can be read from them."""
    seen = first_exposure[~np.isnat(first_exposure)]
    if len(seen) < 2:
        return None
    span = float((seen.max() - seen.min()) / DAY)
    return span if span * 1440 >= 1 else None


def plan(
    frames: ExperimentFrames,
    experiment: Experiment,
    *,
    mde: float,
    power: float,
    alpha: float,
    days: float,
    source: Source,
) -> PlanResult:
    """What each metric of ``experiment`` needs to detect a relative change ``mde`` with ``power``
    (two-sided at ``alpha``, control against each variant, at the experiment's weights), and the
    MDE reachable in ``days``.

    ``frames``: the experiment's own (``source="experiment"``) or recent traffic's, every device one
    unit of the control arm (``"recent_traffic"``). Arms are pooled: the plan needs the metric's
    spread, not an effect. Traffic is new units per day: the units over the days between the first
    and the last first exposure.
    """
    clean = members(frames.units, experiment.variant_keys)
    rows = metric_rows(frames.events, frames.durations, clean)
    weights = experiment.weights
    span = observed_days(clean.first_exposure)
    per_day = len(clean) / span if span else None
    plans = []
    for name in metric_names(experiment):
        numerator, denominator = unit_values(rows[name], len(clean))
        mean, variance = per_unit_moments(numerator, denominator)
        # power.py answers None for a metric without variance (nobody converts) or a zero mean.
        needed = required_units(variance, mean, mde, alpha, power, weights)
        reachable = reachable_mde(variance, mean, int(per_day * days), alpha, power, weights) if per_day else None
        plans.append(
            MetricPlan(
                metric=name,
                baseline=finite_or_none(mean),
                per_unit_standard_deviation=finite_or_none(math.sqrt(variance)) if variance >= 0 else None,
                required_units=needed,
                required_days=needed / per_day if needed is not None and per_day else None,
                reachable_mde=reachable,
            )
        )
    return PlanResult(
        experiment_key=experiment.key,
        source=source,
        mde=mde,
        power=power,
        alpha=alpha,
        days=days,
        units_per_day=per_day,
        weights=list(weights),
        metrics=plans,
    )


def progress(
    clean: Members,
    numerator: np.ndarray,
    denominator: np.ndarray,
    experiment: Experiment,
    config: AnalysisConfig,
    now: datetime,
) -> Progress | None:
    """How far the experiment is towards the sample its plan needs for the primary metric; ``None``
    without a plan.

    ``numerator`` and ``denominator``: the primary metric's unadjusted per-unit values over ``clean``.
    The required sample comes from the variance so far, pooled over arms, so it settles as units come
    in; units per day are :func:`plan`'s (units over the days between the first and the last first
    exposure), so the report's days to go and the plan's days agree. Days elapsed run from the
    analysis start (else the first exposure) to ``now`` or the end.
    """
    if experiment.plan is None:
        return None
    mde, power = experiment.plan.mde, experiment.plan.power
    mean, variance = per_unit_moments(numerator, denominator)
    needed = required_units(variance, mean, mde, config.alpha, power, experiment.weights)
    units = len(clean)
    elapsed = _days_elapsed(clean, experiment, now)
    span = observed_days(clean.first_exposure)
    per_day = units / span if span else None
    remaining = None
    if needed is not None and per_day is not None:
        remaining = max(0.0, (needed - units) / per_day)
    return Progress(
        metric=experiment.primary_metric,
        mde=mde,
        power=power,
        required_units=needed,
        units=units,
        share=units / needed if needed else None,
        units_per_day=per_day,
        days_elapsed=elapsed,
        days_remaining=remaining,
    )


def _days_elapsed(clean: Members, experiment: Experiment, now: datetime) -> float:
    seen = clean.first_exposure[~np.isnat(clean.first_exposure)]
    start = experiment.analysis_start
    if start is None and not len(seen):
        return 0.0
    begin = _utc_ms(start) if start is not None else seen.min()
    end = _utc_ms(now)
    if experiment.end is not None:
        end = min(end, _utc_ms(experiment.end))
    return max(0.0, float((end - begin) / DAY))


def _utc_ms(moment: datetime) -> np.datetime64:
    """As the members' times are: UTC without a zone (a naive ``moment`` is taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(moment, "ms")
