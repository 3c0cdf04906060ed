"""The warehouse loader: Kafka → ClickHouse in batches, as a named pipeline of steps.

decode (``decode``, with ``rows`` and ``schema``) → insert with backpressure (``insert``) →
dead letters (``deadletters``) → commit (``commit``), driven by the batch loop in ``consumer``.
Offsets are committed only after the insert; a replay collapses on each table's dedup key.
"""

from clickhouse.loader.consumer import Loader, LoaderStats, flush_deadline, record_boundary
from clickhouse.loader.decode import (
    Decoded,
    FastPathRefused,
    decode_batch,
    decode_checked,
    decode_events,
    decode_events_fast,
)
from clickhouse.loader.insert import INSERT_SETTINGS, Backpressure, Inserted, insert_table, is_transient
from clickhouse.loader.messages import Message, Rejected, record_messages
from clickhouse.loader.schema import DLQ_SCHEMA, EVENT_SCHEMA, INFERENCE_SCHEMA, SESSION_SCHEMA, TOOL_SCHEMA

__all__ = [
    "DLQ_SCHEMA",
    "EVENT_SCHEMA",
    "INFERENCE_SCHEMA",
    "INSERT_SETTINGS",
    "SESSION_SCHEMA",
    "TOOL_SCHEMA",
    "Backpressure",
    "Decoded",
    "FastPathRefused",
    "Inserted",
    "Loader",
    "LoaderStats",
    "Message",
    "Rejected",
    "decode_batch",
    "decode_checked",
    "decode_events",
    "decode_events_fast",
    "flush_deadline",
    "insert_table",
    "is_transient",
    "record_boundary",
    "record_messages",
]
