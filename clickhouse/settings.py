"""Settings of the warehouse process: loader, query API and reports."""

from __future__ import annotations

from pydantic import Field

from funnelstream.settings import ServiceSettings
from funnelstream.topics import Topic


class WarehouseSettings(ServiceSettings):
    """``FS_WAREHOUSE_*`` variables; Kafka and ClickHouse sections come from ServiceSettings."""

    warehouse_host: str = "127.0.0.1"
    warehouse_port: int = Field(default=8100, ge=1, le=65535)
    warehouse_api_url: str | None = None
    """Where readers find ``warehouse serve``; unset: http://{warehouse_host}:{warehouse_port}."""
    warehouse_run_loader: bool = True
    """``warehouse serve`` runs the loader too; turn off when loaders run apart (server mode)."""
    loader_group_id: str = "funnelstream-warehouse-loader"
    loader_batch_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    loader_batch_seconds: float = Field(default=1.0, gt=0, le=60)
    loader_events_topic: str = str(Topic.EVENTS_ENRICHED)
    loader_sessions_topic: str = str(Topic.SESSIONS)
    loader_dlq_topic: str = str(Topic.EVENTS_DLQ)
    loader_tools_topic: str = str(Topic.DIMENSIONS_TOOLS)
    loader_inferences_topic: str = str(Topic.DIMENSIONS_INFERENCES)
    loader_retry_initial_s: float = Field(default=0.2, gt=0)
    loader_retry_max_s: float = Field(default=10.0, gt=0)
    sql_max_rows: int = Field(default=100_000, ge=1)
    sql_max_seconds: float = Field(default=30.0, gt=0)

    @property
    def api_url(self) -> str:
        return self.warehouse_api_url or f"http://{self.warehouse_host}:{self.warehouse_port}"

    @property
    def loader_topics(self) -> list[str]:
        return [
            self.loader_events_topic,
            self.loader_sessions_topic,
            self.loader_dlq_topic,
            self.loader_tools_topic,
            self.loader_inferences_topic,
        ]
