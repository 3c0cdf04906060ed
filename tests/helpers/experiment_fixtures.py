"""Experiments as tests build them: ``make_experiment`` and the ``experiment`` and ``chdb_path`` fixtures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from funnelstream.experiments.definitions import Experiment


def make_experiment(**overrides: Any) -> Experiment:
    fields: dict[str, Any] = {
        "key": "segmentation_tool",
        "status": "running",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        "start": datetime(2026, 11, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return Experiment.model_validate(fields)


@pytest.fixture
def experiment() -> Experiment:
    return make_experiment()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One chdb data path for the session's experiment tests (a process uses one path at a time);
    each test gets its own database on it (tests.helpers.experiment_warehouse)."""
    return Path(tmp_path_factory.mktemp("experiments")) / "chdb"
