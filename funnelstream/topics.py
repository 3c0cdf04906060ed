"""Every Kafka topic name in one place, and the namespace that prefixes topics and consumer groups.

A setting typed :data:`TopicName` or :data:`GroupName` is prefixed with ``FS_KAFKA__NAMESPACE``
when one is set (``<namespace>.events.raw``), so a private run on a shared broker sets one variable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated


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


@dataclass(frozen=True, slots=True)
class InNamespace:
    """Marks a setting that names a Kafka topic or consumer group."""


TopicName = Annotated[str, InNamespace()]
GroupName = Annotated[str, InNamespace()]


def in_namespace(name: str, namespace: str) -> str:
    """``name`` inside ``namespace``; an empty name (a topic switched off) stays empty."""
    return f"{namespace}.{name}" if namespace and name else name
