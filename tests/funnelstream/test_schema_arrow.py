"""The warehouse's Arrow schemas derived from the contract models, column by column."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import BaseModel

from funnelstream.contract import DeadLetter, EnrichedEvent, InferenceDimension, SessionSummary, ToolDimension
from funnelstream.schema import arrow_schema, arrow_type

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRING_MAP = pa.map_(pa.string(), pa.string())

# What the ClickHouse tables receive, written out: a change to a model that changes a column
# shows up here before it reaches an insert.
EVENTS = [
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("schema_version", pa.int64()),
    ("anonymous_id", pa.string()),
    ("user_id", pa.string()),
    ("input_id", pa.string()),
    ("session_id", pa.string()),
    ("client_ts", TIMESTAMP),
    ("sent_at", TIMESTAMP),
    ("received_at", TIMESTAMP),
    ("event_ts", TIMESTAMP),
    ("timestamp_flag", pa.string()),
    ("is_late", pa.bool_()),
    ("source", pa.string()),
    ("funnel_step", pa.int64()),
    ("tool_id", pa.int64()),
    ("tool_name", pa.string()),
    ("tool_type", pa.string()),
    ("inference_id", pa.int64()),
    ("inference_name", pa.string()),
    ("inference_type", pa.string()),
    ("unknown_dimension", pa.bool_()),
    ("job_id", pa.string()),
    ("input_url", pa.string()),
    ("mask_url", pa.string()),
    ("inference_url", pa.string()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("size_bytes", pa.int64()),
    ("content_type", pa.string()),
    ("proposal_count", pa.int64()),
    ("status", pa.string()),
    ("latency_ms", pa.float64()),
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("error", pa.string()),
    ("score", pa.int64()),
    ("experiment_key", pa.string()),
    ("variant", pa.string()),
    ("experiments", STRING_MAP),
    ("page_url", pa.string()),
    ("referrer", pa.string()),
    ("user_agent", pa.string()),
    ("browser", pa.string()),
    ("os", pa.string()),
    ("device", pa.string()),
    ("is_bot", pa.bool_()),
    ("locale", pa.string()),
    ("app_version", pa.string()),
    ("library_name", pa.string()),
    ("library_version", pa.string()),
    ("ip", pa.string()),
    ("properties", pa.string()),
    ("enriched_at", TIMESTAMP),
]
SESSIONS = [
    ("session_id", pa.string()),
    ("anonymous_id", pa.string()),
    ("user_id", pa.string()),
    ("started_at", TIMESTAMP),
    ("last_event_at", TIMESTAMP),
    ("duration_s", pa.float64()),
    ("event_count", pa.int64()),
    ("late_event_count", pa.int64()),
    ("input_ids", pa.list_(pa.string())),
    ("deepest_step", pa.int64()),
    ("deepest_step_name", pa.string()),
    ("experiments", STRING_MAP),
    ("closed", pa.bool_()),
    ("version", pa.int64()),
    ("updated_at", TIMESTAMP),
]
DLQ = [
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("errors", pa.list_(pa.struct([("field", pa.string()), ("reason", pa.string())]))),
    ("payload", pa.string()),
    ("payload_encoding", pa.string()),
    ("payload_truncated", pa.bool_()),
    ("payload_bytes", pa.int64()),
    ("original_key", pa.string()),
    ("topic", pa.string()),
    ("partition", pa.int64()),
    ("offset", pa.int64()),
    ("source", pa.string()),
    ("event_id", pa.string()),
    ("failed_at", TIMESTAMP),
    ("dlq_partition", pa.int64()),
    ("dlq_offset", pa.int64()),
]
TOOLS = [("tool_id", pa.int64()), ("tool_name", pa.string()), ("tool_type", pa.string()), ("updated_at", TIMESTAMP)]
INFERENCES = [
    ("inference_id", pa.int64()),
    ("inference_name", pa.string()),
    ("inference_type", pa.string()),
    ("updated_at", TIMESTAMP),
]
DLQ_EXTRA = [("dlq_partition", pa.int64()), ("dlq_offset", pa.int64())]


@pytest.mark.parametrize(
    ("model", "extra", "expected"),
    [
        (EnrichedEvent, [], EVENTS),
        (SessionSummary, [], SESSIONS),
        (DeadLetter, DLQ_EXTRA, DLQ),
        (ToolDimension, [], TOOLS),
        (InferenceDimension, [], INFERENCES),
    ],
    ids=["events", "sessions", "dlq", "tools", "inferences"],
)
def test_the_derived_schema_equals_the_table_columns(
    model: type[BaseModel], extra: list[tuple[str, pa.DataType]], expected: list[tuple[str, pa.DataType]]
) -> None:
    derived = arrow_schema(model, extra)
    assert [(f.name, f.type) for f in derived] == expected
    assert derived == pa.schema(expected)


def test_a_type_without_an_arrow_column_is_refused() -> None:
    with pytest.raises(TypeError):
        arrow_type(int | str)
    with pytest.raises(TypeError):
        arrow_type(bytes)
