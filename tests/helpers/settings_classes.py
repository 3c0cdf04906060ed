"""Every settings class of the project, and the environment variables they read together."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from clickhouse.qa.settings import QASettings
from clickhouse.settings import WarehouseSettings
from funnelstream.experiments.settings import ExperimentSettings
from funnelstream.settings import ServiceSettings, env_names
from inference_service.settings import InferenceSettings
from infra.stack import InfraSettings
from ingest.settings import IngestSettings
from stream_processors.settings import StreamSettings

SETTINGS_CLASSES: list[type[BaseSettings]] = [
    ServiceSettings,
    InfraSettings,
    QASettings,
    ExperimentSettings,
    InferenceSettings,
    WarehouseSettings,
    IngestSettings,
    StreamSettings,
]


def variables_read() -> set[str]:
    """Every variable some class reads, a whole section given as one JSON value included."""
    return set().union(*(env_names(c, sections=True) for c in SETTINGS_CLASSES))
