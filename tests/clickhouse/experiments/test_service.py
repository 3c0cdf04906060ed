"""Settings reach the analysis: every FS_EXPERIMENTS__* analysis setting lands in AnalysisConfig."""

from __future__ import annotations

import pytest

from clickhouse.experiments.service import analysis_config
from clickhouse.experiments.stats import AnalysisConfig
from funnelstream.experiments.settings import ExperimentSettings


def test_defaults_are_the_analysis_defaults() -> None:
    config = analysis_config(ExperimentSettings(_env_file=None).experiments)
    assert config == AnalysisConfig()


def test_experiment_settings_reach_the_analysis_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ALPHA": "0.01",
        "WINSOR_QUANTILE": "0.99",
        "BOOTSTRAP_RESAMPLES": "50",
        "CUPED": "false",
        "PRIOR_MEAN": "0.02",
        "PRIOR_STDDEV": "0.1",
        "PROPER_PRIOR": "true",
        "EVALUATE_INTERVAL_S": "0",
    }.items():
        monkeypatch.setenv(f"FS_EXPERIMENTS__{name}", value)
    settings = ExperimentSettings(_env_file=None).experiments
    assert settings.evaluate_interval_s == 0
    config = analysis_config(settings, sequential=True)
    assert config == AnalysisConfig(
        alpha=0.01,
        winsor_quantile=0.99,
        bootstrap_resamples=50,
        sequential=True,
        cuped=False,
        prior_mean=0.02,
        prior_stddev=0.1,
        proper_prior=True,
    )


@pytest.mark.parametrize(
    ("name", "value"), [("EVALUATE_INTERVAL_S", "-1"), ("PRIOR_STDDEV", "0"), ("PRIOR_STDDEV", "nan")]
)
def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"FS_EXPERIMENTS__{name}", value)
    with pytest.raises(ValueError, match=name.lower()):
        ExperimentSettings(_env_file=None)
