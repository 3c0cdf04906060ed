"""The experiment results beyond one comparison: guardrail checks, lift over time, health by
dimension, progress towards the planned sample.

Owns the shapes only (what ``GET /v1/experiments/{key}/results`` answers and the reports render);
the numbers are computed in :mod:`clickhouse.experiments.analysis`, :mod:`~clickhouse.experiments.timeline`,
:mod:`~clickhouse.experiments.health` and :mod:`~clickhouse.experiments.planning`.
Invariant: every field is a plain JSON value; ``None`` where a figure cannot be computed, never NaN.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from clickhouse.experiments.stats import Model
from funnelstream.experiments.definitions import Direction


class GuardrailCheck(Model):
    """One guardrail metric of one variant against the control."""

    metric: str
    variant: str
    harmful: Direction
    """The direction in which the metric is harmed."""
    threshold: float
    """Relative change in the harmful direction that is tolerated."""
    relative_lift: float | None
    p_value: float | None
    """One-sided, of "the harm is at most ``threshold``"; below alpha means significantly harmed."""
    harmed: bool


class TimelinePoint(Model):
    """A variant against the control over the data up to (cumulative) or on (by exposure day) one day."""

    day: int
    """Cumulative: days since the analysis start (0 = its first day). By exposure day: days since each
    unit's first exposure."""
    date: dt.date | None = None
    """Cumulative only: the calendar day (UTC) whose end is the cut-off."""
    variant: str
    units: dict[str, int]
    """Units counted per arm (control and this variant)."""
    control_value: float | None
    variant_value: float | None
    relative_lift: float | None
    lift_ci_low: float | None
    lift_ci_high: float | None
    p_value: float | None
    significant: bool


class MetricTimeline(Model):
    metric: str
    cumulative: list[TimelinePoint] = Field(default_factory=list)
    """One point per day since the start: every unit exposed and every event before that day's end."""
    by_exposure_day: list[TimelinePoint] = Field(default_factory=list)
    """Day k: each unit's events in [first exposure + k days, + k + 1 days), over units observed for
    that whole day; a lift that shrinks with k is a novelty effect."""


class DimensionSrm(Model):
    """The sample-ratio check within one value of one dimension."""

    dimension: Literal["browser", "os", "device", "source", "day"]
    value: str
    units: dict[str, int]
    shares: dict[str, float | None]
    expected_shares: dict[str, float]
    chi2: float | None
    p_value: float | None
    alert: bool


class ExposureDay(Model):
    date: dt.date
    units: dict[str, int]
    """Units first exposed that day, per arm (clean units)."""


class ContaminatedUnit(Model):
    anonymous_id: str
    reason: Literal["device", "user"]
    """``device``: this device was seen in two arms; ``user``: it shares a user_id with a unit of another arm."""
    variants: list[str]
    user_ids: list[str]


class Health(Model):
    """Where a broken client or a leak between arms shows: SRM per dimension value, exposures per day,
    and the units seen in several arms."""

    dimensions: list[DimensionSrm] = Field(default_factory=list)
    exposures_per_day: list[ExposureDay] = Field(default_factory=list)
    contaminated_by_reason: dict[str, int] = Field(default_factory=dict)
    contaminated_units: list[ContaminatedUnit] = Field(default_factory=list)
    """The first ones (by anonymous_id), for inspection; ``contaminated_by_reason`` counts them all."""
    contaminated_units_listed_limit: int = 100


class Progress(Model):
    """How far the experiment is towards the sample its plan needs, from the primary metric's variance so far."""

    metric: str
    mde: float
    power: float
    required_units: int | None
    """Both arms together; ``None`` while the metric's variance is unknown."""
    units: int
    share: float | None
    units_per_day: float | None
    days_elapsed: float
    days_remaining: float | None


class MetricPlan(Model):
    """What one metric needs: units and days for the MDE, and the MDE reachable in the given days."""

    metric: str
    baseline: float | None
    per_unit_standard_deviation: float | None
    """Of the unit's linearized contribution (delta method), in the metric's units."""
    required_units: int | None
    required_days: float | None
    reachable_mde: float | None
    """Relative; detectable with the power after ``days`` days of traffic."""


class PlanResult(Model):
    experiment_key: str
    source: Literal["experiment", "recent_traffic"]
    """Where the variance and traffic came from: the experiment's units so far, or every device of the last days."""
    mde: float
    power: float
    alpha: float
    days: float
    units_per_day: float | None
    weights: list[float]
    metrics: list[MetricPlan]
