"""Row conversion: a validated contract model as the dict of its warehouse table's row.

Used by the message-by-message path only; the fast path builds ``events`` columns directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from clickhouse.loader.messages import Message, Rejected
from funnelstream.contract import DeadLetter, EnrichedEvent, SessionSummary
from funnelstream.deadletter import encode_payload


def event_row(event: EnrichedEvent) -> dict[str, Any]:
    row = event.model_dump(mode="python")
    for name in ("event_id", "input_id", "job_id"):
        if row[name] is not None:
            row[name] = str(row[name])
    row["event_type"] = str(event.event_type.value)
    row["timestamp_flag"] = str(event.timestamp_flag.value)
    row["experiments"] = list(event.experiments.items())
    row["properties"] = orjson.dumps(event.properties).decode()
    return row


def session_row(summary: SessionSummary, _: Message) -> dict[str, Any]:
    row = summary.model_dump(mode="python")
    row["input_ids"] = [str(value) for value in summary.input_ids]
    row["experiments"] = list(summary.experiments.items())
    return row


def plain_row(record: BaseModel, _: Message) -> dict[str, Any]:
    return record.model_dump(mode="python")


def dlq_row(letter: DeadLetter, message: Message) -> dict[str, Any]:
    row = letter.model_dump(mode="python")
    row["errors"] = [{"field": e.field, "reason": e.reason} for e in letter.errors]
    row["dlq_partition"] = message.partition
    row["dlq_offset"] = message.offset
    return row


def unreadable_dlq_row(rejected: Rejected) -> dict[str, Any]:
    """A DLQ message that is itself malformed is stored as such, never sent back to the DLQ."""
    payload, encoding = encode_payload(rejected.message.value)
    return {
        "stage": "loader",
        "reason": f"unreadable dead letter: {rejected.reason}",
        "errors": [{"field": e.field, "reason": e.reason} for e in rejected.errors],
        "payload": payload,
        "payload_encoding": encoding,
        "payload_truncated": False,
        "payload_bytes": None,
        "original_key": rejected.message.key.decode("utf-8", "replace") if rejected.message.key else None,
        "topic": rejected.message.topic,
        "partition": rejected.message.partition,
        "offset": rejected.message.offset,
        "source": None,
        "event_id": rejected.event_id,
        "failed_at": datetime.now(UTC),
        "dlq_partition": rejected.message.partition,
        "dlq_offset": rejected.message.offset,
    }
