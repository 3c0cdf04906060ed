"""Every Kafka topic name in one place (DESIGN §3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Topic(enum.StrEnum):
    EVENTS_RAW = "events.raw"
    EVENTS_ENRICHED = "events.enriched"
    SESSIONS = "sessions"
    EVENTS_DLQ = "events.dlq"
    DIMENSIONS_TOOLS = "dimensions.tools"
    DIMENSIONS_INFERENCES = "dimensions.inferences"
    INFERENCE_JOBS = "inference.jobs"
    INFERENCE_RESULTS = "inference.results"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    topic: Topic
    compacted: bool = False
    key: str = ""


TOPIC_SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(Topic.EVENTS_RAW, key="anonymous_id"),
    TopicSpec(Topic.EVENTS_ENRICHED, key="anonymous_id"),
    # Last summary per session wins, so compaction keeps the topic small without losing answers.
    TopicSpec(Topic.SESSIONS, compacted=True, key="session_id"),
    TopicSpec(Topic.EVENTS_DLQ, key="original key"),
    TopicSpec(Topic.DIMENSIONS_TOOLS, compacted=True, key="tool_id"),
    TopicSpec(Topic.DIMENSIONS_INFERENCES, compacted=True, key="inference_id"),
    TopicSpec(Topic.INFERENCE_JOBS, key="input_id"),
    TopicSpec(Topic.INFERENCE_RESULTS, key="job_id"),
)
