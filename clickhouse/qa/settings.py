"""Settings of the QA runner, the heartbeat emitter and ``funnelstream status``."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator

from funnelstream.settings import ServiceSettings
from funnelstream.topics import GroupName, Topic, TopicName


class QAConfig(BaseModel):
    """``FS_QA__*`` variables."""

    thresholds: dict[str, float] = Field(default_factory=dict)
    """Per-check threshold overrides, as JSON: ``{"late_events": 0.05}``."""
    heartbeat_topic: TopicName = Field(default=str(Topic.EVENTS_RAW), min_length=1)
    """Where heartbeats enter the pipeline: the raw topic the stream processors read."""
    heartbeat_ingest_url: str | None = None
    """Send heartbeats through the collector (POST /v1/event) so its stage counts in the freshness;
    unset: produce them to ``heartbeat_topic`` directly, stamped as the collector would."""
    heartbeat_write_key: SecretStr | None = None
    """Write key of the source heartbeats are sent as, when they go through the collector."""
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=3600)
    heartbeat_emitted_by: str = Field(default="heartbeat", min_length=1, max_length=64)
    heartbeat_metrics_port: int = Field(default=9108, ge=0, le=65535)
    """Port of the emitter's /metrics; 0 serves none."""
    freshness_degraded_s: float = Field(default=60.0, gt=0)
    """Heartbeat older than this: the pipeline is behind."""
    freshness_down_s: float = Field(default=300.0, gt=0)
    """Heartbeat older than this: the pipeline is stalled."""
    lag_degraded: int = Field(default=10_000, ge=0)
    """Messages a consumer group may be behind before it counts as degraded."""
    consumer_groups: dict[str, GroupName] = Field(
        default_factory=lambda: {
            "stream processors": "funnelstream-stream",
            "loader": "funnelstream-warehouse-loader",
            "inference": "inference-service",
        }
    )
    """Stage name → Kafka consumer group whose lag ``status`` shows, as JSON."""
    readiness_urls: dict[str, str] = Field(
        default_factory=lambda: {
            "ingest": "http://127.0.0.1:8000/readyz",
            "stream processors": "http://127.0.0.1:6066/healthz",
            "warehouse": "http://127.0.0.1:8100/readyz",
            "inference": "http://127.0.0.1:8200/readyz",
        }
    )
    """Stage → the URL that answers 200 when the service is ready, as JSON."""
    probe_timeout_s: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _down_is_later_than_degraded(self) -> QAConfig:
        if self.freshness_down_s < self.freshness_degraded_s:
            raise ValueError("freshness_down_s: must not be below freshness_degraded_s")
        return self


class QASettings(ServiceSettings):
    qa: QAConfig = Field(default_factory=QAConfig)
