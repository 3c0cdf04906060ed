"""Settings of the stream processors: one class, read from ``FS_`` variables (``FS_STREAM__*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from funnelstream.settings import ServiceSettings, under_data_dir
from funnelstream.topics import GroupName, Topic, TopicName


class StreamConfig(BaseModel):
    app_id: GroupName = Field(default="funnelstream-stream", min_length=1, max_length=200)
    """Faust application id: the consumer group and the prefix of its changelog topics."""
    input_topic: TopicName = str(Topic.EVENTS_RAW)
    enriched_topic: TopicName = str(Topic.EVENTS_ENRICHED)
    sessions_topic: TopicName = str(Topic.SESSIONS)
    dlq_topic: TopicName = str(Topic.EVENTS_DLQ)
    tools_topic: TopicName = str(Topic.DIMENSIONS_TOOLS)
    inferences_topic: TopicName = str(Topic.DIMENSIONS_INFERENCES)
    data_dir: Path = under_data_dir("stream")
    web_port: int = Field(default=6066, ge=1, le=65_535)
    web_host: str = "127.0.0.1"
    dedup_window_s: float = Field(default=24 * 3600, gt=0)
    session_gap_s: float = Field(default=30 * 60, gt=0)
    session_max_s: float = Field(default=24 * 3600, gt=0)
    allowed_lateness_s: float = Field(default=5 * 60, ge=0)
    batch_size: int = Field(default=500, ge=1, le=100_000)
    """Records per take from the stream. A record is one event or a collector's block of up to
    500, so a take is split into runs of ``batch_events`` events, each processed, delivered and
    committed on its own."""
    batch_events: int = Field(default=5000, ge=1, le=1_000_000)
    """Events per processed run (whole records; a run ends with the record that reaches it):
    bounds a batch's output and state changes held in memory."""
    read_ahead_records: int = Field(default=1000, ge=1, le=100_000)
    """Records Faust buffers ahead of the agent (its ``stream_buffer_maxsize``). What waits in
    buffers is memory: up to (read_ahead_records + batch_size) records, typically a few KB each
    (a tracker's request), at most a block's limit (900 kB) for a server SDK's. With one take
    ahead Faust's flow control paused and resumed partitions late and the stage fell behind in
    stretches; two takes ahead it keeps up."""
    fetch_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Most data one fetch returns per partition (Faust's ``consumer_max_fetch_size``; its default
    is 4 MiB): fetched records wait in the consumer until the stream buffer takes them."""
    batch_within_s: float = Field(default=0.2, gt=0)
    timer_interval_s: float = Field(default=5.0, gt=0)
    """How often idle sessions are closed and expired dedup records dropped."""
    user_agent_cache_size: int = Field(default=10_000, ge=0)
    commit_interval_s: float = Field(default=2.0, gt=0)
    consumer_session_timeout_s: float = Field(default=30.0, ge=6)
    """How long the group waits for a worker that stopped answering before its partitions move."""
    delivery_timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _max_covers_gap(self) -> StreamConfig:
        if self.session_max_s < self.session_gap_s:
            raise ValueError("session_max_s: must be at least session_gap_s")
        return self


class StreamSettings(ServiceSettings):
    stream: StreamConfig = Field(default_factory=StreamConfig)
