"""Settings of the experiments component (``FS_EXPERIMENTS__*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from funnelstream.settings import ServiceSettings, under_data_dir

DEFAULT_DEFINITIONS = Path(__file__).parent / "experiments.yaml"
"""The definitions shipped with the package; a deployment points FS_EXPERIMENTS__DEFINITIONS_PATH at its own."""


class ExperimentsConfig(BaseModel):
    definitions_path: Path = DEFAULT_DEFINITIONS
    """The versioned definitions file every collector instance watches."""
    poll_interval_s: float = Field(default=5.0, gt=0, le=3600)
    store_path: Path = under_data_dir("experiments/assignments.sqlite3")
    """SQLite file of sticky assignments and exposure marks, shared by the collector's workers."""
    warehouse_api_url: str | None = None
    """``funnelstream warehouse serve``; when set, reports fetch events through it."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    winsor_quantile: float | None = Field(default=None, gt=0.5, le=1)
    """Off by default: task-time means are then the ones every other reader gives; opt in to cap."""
    bootstrap_resamples: int = Field(default=1000, ge=0, le=100_000)
    evaluate_interval_s: float = Field(default=300.0, ge=0, le=86_400)
    """The warehouse API analyses every running experiment this often, for its /metrics gauges; 0: never."""
    cuped: bool = True
    """Regression adjustment where an experiment asks for it (its ``cuped.enabled``); False: off everywhere."""
    prior_mean: float = Field(default=0.0, ge=-10, le=10)
    """Mean of the Bayesian view's Gaussian prior on the relative lift."""
    prior_stddev: float = Field(default=0.3, gt=0, le=100)
    """Standard deviation of that prior; used only with ``proper_prior``."""
    proper_prior: bool = False
    """False: a flat prior, so the posterior follows the data alone (GrowthBook's default)."""


class ExperimentSettings(ServiceSettings):
    experiments: ExperimentsConfig = Field(default_factory=ExperimentsConfig)
