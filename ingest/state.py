"""What the routes share: built in the lifespan, kept on ``app.state.ingest``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from minio import Minio

from funnelstream.contract import MAX_TEXT_LENGTH
from funnelstream.objectstore import MinioStore
from ingest.access import AccessControl, Source
from ingest.metrics import HotPathMetrics, IngestMetrics
from ingest.pipeline import Stamp, truncate_ip
from ingest.producer import CollectorProducer
from ingest.results import ResultCache
from ingest.settings import IngestConfig, IngestSettings


@dataclass
class IngestState:
    settings: IngestSettings
    access: AccessControl
    producer: CollectorProducer
    metrics: IngestMetrics
    results: ResultCache
    presigner: Minio
    store: MinioStore
    """The bucket through the services' own endpoint (not the browsers'): stats uploads."""
    hot: HotPathMetrics = field(init=False)
    late_limit: timedelta = field(init=False)
    future_tolerance: timedelta = field(init=False)

    def __post_init__(self) -> None:
        self.hot = HotPathMetrics(self.metrics)
        self.late_limit = timedelta(seconds=self.config.late_limit_s)
        self.future_tolerance = timedelta(seconds=self.config.future_tolerance_s)

    @property
    def config(self) -> IngestConfig:
        return self.settings.ingest

    def client_ip(self, request: Request) -> str | None:
        if self.config.trust_forwarded_for:
            forwarded = request.headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",", 1)[0].strip()
        return request.client.host if request.client else None

    def stamp(self, request: Request, source: Source, batch_sent_at: Any = None) -> Stamp:
        config = self.config
        ip = self.client_ip(request)
        return Stamp(
            received_at=datetime.now(UTC),
            source=source.name,
            ip=truncate_ip(ip, config.ipv4_prefix, config.ipv6_prefix) if ip else None,
            user_agent=(request.headers.get("user-agent") or "")[:MAX_TEXT_LENGTH] or None,
            late_limit=self.late_limit,
            future_tolerance=self.future_tolerance,
            ipv4_prefix=config.ipv4_prefix,
            ipv6_prefix=config.ipv6_prefix,
            batch_sent_at=batch_sent_at,
        )


def state_of(request: Request) -> IngestState:
    state: IngestState = request.app.state.ingest
    return state
