"""The pipeline heartbeat: a PipelineHeartbeat produced to ``events.raw`` on a timer.

It travels the whole path an event travels (processors → ``events.enriched`` → loader → the
``events`` table), so ``now − max(received_at)`` of heartbeats in the warehouse is the end-to-end
freshness, measured continuously even when no user is active. By default the emitter writes to the raw
topic directly and stamps the fields the collector would stamp; with ``FS_QA__HEARTBEAT_INGEST_URL``
it posts through the collector instead, so that stage counts too.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import Counter, Gauge

from clickhouse.qa.errors import HeartbeatRejected
from clickhouse.qa.settings import QASettings
from funnelstream.contract import EventType, PipelineHeartbeat, TimestampFlag, event_to_json
from funnelstream.kafka import (
    DeliveryReport,
    consumer_group_lag,
    flush_or_raise,
    make_admin,
    make_producer,
    produce,
)
from ops.status import Freshness

log = logging.getLogger("ops.heartbeat")

HEARTBEAT_ANONYMOUS_ID = "funnelstream-heartbeat"
HEARTBEAT_SOURCE = "heartbeat"

HEARTBEATS_SENT = Counter(
    "funnelstream_heartbeats_sent_total", "Heartbeats accepted: acknowledged by Kafka, or answered 202 by the collector"
)
HEARTBEAT_FAILURES = Counter("funnelstream_heartbeat_failures_total", "Heartbeats that were not accepted")
HEARTBEAT_LAST_SENT = Gauge(
    "funnelstream_heartbeat_last_sent_timestamp_seconds", "Unix time of the last accepted heartbeat"
)
PIPELINE_FRESHNESS = Gauge(
    "funnelstream_pipeline_freshness_seconds", "Age of the newest heartbeat visible in the warehouse"
)
HEARTBEAT_END_TO_END = Gauge(
    "funnelstream_heartbeat_end_to_end_seconds", "Emission to warehouse insertion of the newest visible heartbeat"
)
CONSUMER_GROUP_LAG = Gauge(
    "funnelstream_consumer_group_lag",
    "Messages a pipeline stage's consumer group has not committed, per partition",
    ["stage", "group", "topic", "partition"],
)
LAG_PROBE_FAILURES = Counter("funnelstream_lag_probe_failures_total", "Consumer-group lag reads that failed", ["stage"])
FRESHNESS_PROBE_FAILURES = Counter(
    "funnelstream_freshness_probe_failures_total", "Freshness reads from the warehouse that failed"
)


def make_heartbeat(emitted_by: str, now: datetime | None = None) -> PipelineHeartbeat:
    now = now or datetime.now(UTC)
    return PipelineHeartbeat(
        event_type=EventType.PIPELINE_HEARTBEAT,
        event_id=uuid.uuid4(),
        anonymous_id=HEARTBEAT_ANONYMOUS_ID,
        client_ts=now,
        sent_at=now,
        received_at=now,
        event_ts=now,
        timestamp_flag=TimestampFlag.OK,
        source=HEARTBEAT_SOURCE,
        emitted_by=emitted_by,
    )


class HeartbeatEmitter:
    """Produces one heartbeat per ``beat()``; ``run()`` beats until ``stop`` is set."""

    def __init__(
        self,
        settings: QASettings,
        *,
        topic: str | None = None,
        producer: Any = None,
        http: httpx.Client | None = None,
        freshness: Callable[[], Freshness] | None = None,
        watch_lag: bool = False,
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.qa.heartbeat_topic
        self.freshness = freshness
        """Reads the pipeline's freshness after each beat, for the gauges Prometheus scrapes."""
        self.watch_lag = watch_lag
        """Export the lag of the consumer groups in ``settings.qa.consumer_groups`` after each beat."""
        self._admin: Any = None
        self.emitted_by = f"{settings.qa.heartbeat_emitted_by}@{socket.gethostname()}"[:64]
        self._producer = producer
        self._http = http
        self.stop = threading.Event()

    @property
    def via_ingest(self) -> bool:
        return self.settings.qa.heartbeat_ingest_url is not None

    def setup(self) -> None:
        url = self.settings.qa.heartbeat_ingest_url
        if url is not None:
            if self._http is None:
                self._http = httpx.Client(base_url=url, timeout=max(self.settings.qa.heartbeat_interval_s, 5.0))
        elif self._producer is None:
            self._producer = make_producer(self.settings.kafka, **{"linger.ms": 0})

    def beat(self) -> PipelineHeartbeat:
        """Send one heartbeat and wait until it is durable; raises why it is not."""
        self.setup()
        heartbeat = make_heartbeat(self.emitted_by)
        try:
            if self.via_ingest:
                self._post(heartbeat)
            else:
                self._produce(heartbeat)
        except Exception:
            HEARTBEAT_FAILURES.inc()
            raise
        HEARTBEATS_SENT.inc()
        HEARTBEAT_LAST_SENT.set(heartbeat.client_ts.timestamp())
        log.debug("heartbeat sent", extra={"event_id": str(heartbeat.event_id), "topic": self.topic})
        return heartbeat

    def _produce(self, heartbeat: PipelineHeartbeat) -> None:
        report = DeliveryReport()
        produce(self._producer, self.topic, event_to_json(heartbeat), heartbeat.anonymous_id, report)
        flush_or_raise(self._producer, report, timeout_s=max(self.settings.qa.heartbeat_interval_s, 5.0))

    def _post(self, heartbeat: PipelineHeartbeat) -> None:
        assert self._http is not None
        # Only what a client sends: the collector stamps received_at, event_ts and source itself.
        body = heartbeat.model_dump(
            mode="json", exclude_none=True, exclude={"received_at", "event_ts", "timestamp_flag", "source"}
        )
        key = self.settings.qa.heartbeat_write_key
        headers = {"X-Write-Key": key.get_secret_value()} if key else {}
        response = self._http.post("/v1/event", json=body, headers=headers)
        if response.status_code != 202:
            raise HeartbeatRejected(response.status_code, response.text)

    def run(self, count: int | None = None) -> int:
        """Beat every interval until stopped (or ``count`` beats); a failed beat is logged, not fatal:
        the gap it leaves is exactly what freshness should show."""
        sent = 0
        while not self.stop.is_set() and (count is None or sent < count):
            try:
                self.beat()
                sent += 1
            except Exception as exc:
                log.warning("heartbeat not delivered", extra={"topic": self.topic, "error": str(exc)})
            self.observe_freshness()
            self.observe_lag()
            if count is not None and sent >= count:
                break
            self.stop.wait(self.settings.qa.heartbeat_interval_s)
        return sent

    def observe_freshness(self) -> None:
        if self.freshness is None:
            return
        try:
            freshness = self.freshness()
        except Exception as exc:  # the warehouse may be away; the next beat tries again
            FRESHNESS_PROBE_FAILURES.inc()
            log.warning("freshness not read", extra={"error": str(exc)[:300]})
            return
        if freshness.age_s is not None:
            PIPELINE_FRESHNESS.set(freshness.age_s)
        if freshness.last_latency_s is not None:
            HEARTBEAT_END_TO_END.set(freshness.last_latency_s)

    def observe_lag(self) -> None:
        if not self.watch_lag:
            return
        if self._admin is None:
            self._admin = make_admin(self.settings.kafka)
        for stage, group in self.settings.qa.consumer_groups.items():
            try:
                lag = consumer_group_lag(
                    self.settings.kafka, group, self.settings.qa.probe_timeout_s, admin=self._admin
                )
            except Exception as exc:  # the broker may be away; the next beat tries again
                LAG_PROBE_FAILURES.labels(stage).inc()
                log.warning("consumer-group lag not read", extra={"group": group, "error": str(exc)[:300]})
                continue
            for (topic, partition), value in lag.per_partition.items():
                CONSUMER_GROUP_LAG.labels(stage, group, topic, str(partition)).set(value)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        if self._http is not None:
            self._http.close()
            self._http = None
