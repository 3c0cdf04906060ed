"""Settings and a warehouse bound to the experiment computations: the analysis configuration from
``FS_EXPERIMENTS__*`` and an experiment's plan from an open warehouse (API, evaluation and CLI alike).

Invariant: every caller builds its :class:`AnalysisConfig` here, so a setting reaches them all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse.experiments.planning import plan
from clickhouse.experiments.results import PlanResult
from clickhouse.experiments.stats import AnalysisConfig
from clickhouse.experiments.warehouse import QueriesFrames, fetch_frames, fetch_traffic_frames
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.settings import ExperimentsConfig

TRAFFIC_DAYS = 14
"""Before an experiment has units, it is planned from the devices of this many recent days."""


def analysis_config(experiments: ExperimentsConfig, sequential: bool = False) -> AnalysisConfig:
    """The one place where settings become the analysis's configuration (API, evaluation and CLI)."""
    return AnalysisConfig(
        alpha=experiments.alpha,
        winsor_quantile=experiments.winsor_quantile,
        bootstrap_resamples=experiments.bootstrap_resamples,
        sequential=sequential,
        cuped=experiments.cuped,
        prior_mean=experiments.prior_mean,
        prior_stddev=experiments.prior_stddev,
        proper_prior=experiments.proper_prior,
    )


def plan_warehouse(
    warehouse: QueriesFrames,
    experiment: Experiment,
    *,
    mde: float,
    power: float,
    days: float,
    alpha: float,
    now: datetime | None = None,
) -> PlanResult:
    """The plan from the experiment's own units once it has some, else from recent traffic."""
    frames = fetch_frames(warehouse, experiment)
    if len(frames.units):
        return plan(frames, experiment, mde=mde, power=power, alpha=alpha, days=days, source="experiment")
    end = now or datetime.now(UTC)
    traffic = fetch_traffic_frames(warehouse, end - timedelta(days=TRAFFIC_DAYS), end, experiment.control)
    return plan(traffic, experiment, mde=mde, power=power, alpha=alpha, days=days, source="recent_traffic")
