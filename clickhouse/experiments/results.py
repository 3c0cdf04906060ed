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
    """The guardrail metric's name."""
    variant: str
    """The variant compared with the control."""
    harmful: Direction
    """The direction in which the metric is harmed."""
    threshold: float
    """Relative change in the harmful direction that is tolerated."""
    relative_lift: float | None
    """The variant's relative change of the metric against the control."""
    p_value: float | None
    """One-sided, of "the harm is at most ``threshold``"; below alpha means significantly harmed."""
    harmed: bool
    """Significantly moved the harmful way by more than ``threshold``: an alert."""


class TimelinePoint(Model):
    """A variant against the control over the data up to (cumulative) or on (by exposure day) one day."""

    day: int
    """Cumulative: days since the analysis start (0 = its first day). By exposure day: days since each
    unit's first exposure."""
    date: dt.date | None = None
    """Cumulative only: the calendar day (UTC) whose end is the cut-off."""
    variant: str
    """The variant compared with the control."""
    units: dict[str, int]
    """Units counted per arm (control and this variant)."""
    control_value: float | None
    """The control's value of the metric over the point's data."""
    variant_value: float | None
    """The variant's value of the metric over the point's data."""
    relative_lift: float | None
    """The variant's relative change against the control."""
    lift_ci_low: float | None
    """Lower end of the lift interval, on the results' basis (fixed horizon or sequential)."""
    lift_ci_high: float | None
    """Upper end of the lift interval."""
    p_value: float | None
    """Of the relative lift, on the same basis as the interval."""
    significant: bool
    """``p_value`` < alpha: the interval excludes zero."""


class MetricTimeline(Model):
    metric: str
    """The metric's name, as in the results."""
    cumulative: list[TimelinePoint] = Field(default_factory=list)
    """One point per day since the start: every unit exposed and every event before that day's end."""
    by_exposure_day: list[TimelinePoint] = Field(default_factory=list)
    """Day k: each unit's events in [first exposure + k days, + k + 1 days), over units observed for
    that whole day; a lift that shrinks with k is a novelty effect."""


class DimensionSrm(Model):
    """The sample-ratio check within one value of one dimension."""

    dimension: Literal["browser", "os", "device", "source", "day"]
    """What the units are split by (``day``: the UTC day of the first exposure)."""
    value: str
    """The dimension's value (``unknown`` where the event did not say)."""
    units: dict[str, int]
    """Clean units with this value, per arm."""
    shares: dict[str, float | None]
    """Each arm's share of those units."""
    expected_shares: dict[str, float]
    """Each arm's planned weight."""
    chi2: float | None
    """Chi-square statistic of the counts against the weights."""
    p_value: float | None
    """Of the chi-square test."""
    alert: bool
    """A sample ratio mismatch within this value."""


class ExposureDay(Model):
    date: dt.date
    """The UTC day."""
    units: dict[str, int]
    """Units first exposed that day, per arm (clean units)."""


class ContaminatedUnit(Model):
    anonymous_id: str
    """The unit (device)."""
    reason: Literal["device", "user"]
    """``device``: this device was seen in two arms; ``user``: it shares a user_id with a unit of another arm."""
    variants: list[str]
    """Every arm the unit was seen in."""
    user_ids: list[str]
    """The user ids the unit was seen with."""


class Health(Model):
    """Where a broken client or a leak between arms shows: SRM per dimension value, exposures per day,
    and the units seen in several arms."""

    dimensions: list[DimensionSrm] = Field(default_factory=list)
    """The sample-ratio check within each value of each dimension."""
    exposures_per_day: list[ExposureDay] = Field(default_factory=list)
    """Units first exposed per UTC day, per arm."""
    contaminated_by_reason: dict[str, int] = Field(default_factory=dict)
    """Units seen in several arms, counted by ``reason``."""
    contaminated_units: list[ContaminatedUnit] = Field(default_factory=list)
    """The first ones (by anonymous_id), for inspection; ``contaminated_by_reason`` counts them all."""
    contaminated_units_listed_limit: int = 100
    """At most this many units are listed."""


class Progress(Model):
    """How far the experiment is towards the sample its plan needs, from the primary metric's variance so far."""

    metric: str
    """The primary metric, whose variance sizes the sample."""
    mde: float
    """The planned minimum detectable effect, a relative change."""
    power: float
    """The planned probability of detecting ``mde``."""
    required_units: int | None
    """Both arms together; ``None`` while the metric's variance is unknown."""
    units: int
    """Clean units exposed so far."""
    share: float | None
    """``units / required_units``; ``None`` while ``required_units`` is unknown."""
    units_per_day: float | None
    """Units exposed per day so far."""
    days_elapsed: float
    """Days since the analysis start."""
    days_remaining: float | None
    """Days until ``required_units`` at the rate so far; 0 once reached."""


class MetricPlan(Model):
    """What one metric needs: units and days for the MDE, and the MDE reachable in the given days."""

    metric: str
    """The metric's name."""
    baseline: float | None
    """The metric's value over the data planned from."""
    per_unit_standard_deviation: float | None
    """Of the unit's linearized contribution (delta method), in the metric's units."""
    required_units: int | None
    """Units of all arms together needed to detect ``mde`` with ``power``."""
    required_days: float | None
    """Days of traffic those units take at ``units_per_day``."""
    reachable_mde: float | None
    """Relative; detectable with the power after ``days`` days of traffic."""


class PlanResult(Model):
    experiment_key: str
    """The experiment planned for."""
    source: Literal["experiment", "recent_traffic"]
    """Where the variance and traffic came from: the experiment's units so far, or every device of the last days."""
    mde: float
    """The relative change to detect."""
    power: float
    """The probability of detecting it."""
    alpha: float
    """Two-sided significance level."""
    days: float
    """The duration the reachable MDE is computed for."""
    units_per_day: float | None
    """New units per day in the data planned from."""
    weights: list[float]
    """The arms' weights."""
    metrics: list[MetricPlan]
    """One plan per metric of the experiment."""
