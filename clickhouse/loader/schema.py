"""The Arrow schemas the loader inserts, derived from the contract models.

Owns the per-table schemas and what the fast decoder needs to know about ``events``: its
required columns and the defaults of its non-null columns. Invariant: nothing here restates a
field; a column follows its model field (``funnelstream.schema.arrow_schema``).
"""

from __future__ import annotations

import enum
import typing
from typing import Any

import orjson
import pyarrow as pa

from funnelstream.contract import DeadLetter, EnrichedEvent, InferenceDimension, SessionSummary, ToolDimension
from funnelstream.schema import JSON_TEXT, STRING_MAP, arrow_schema

# The events table has the same columns plus inserted_at, which ClickHouse stamps.
EVENT_SCHEMA = arrow_schema(EnrichedEvent)
SESSION_SCHEMA = arrow_schema(SessionSummary)
# dlq_events keeps where the dead letter itself sits in the DLQ topic.
DLQ_SCHEMA = arrow_schema(DeadLetter, [("dlq_partition", pa.int64()), ("dlq_offset", pa.int64())])
TOOL_SCHEMA = arrow_schema(ToolDimension)
INFERENCE_SCHEMA = arrow_schema(InferenceDimension)

REQUIRED_EVENT_COLUMNS = tuple(name for name, info in EnrichedEvent.model_fields.items() if info.is_required())
EVENT_FIELDS = frozenset(EnrichedEvent.model_fields)


def _column_default(value: Any, kind: pa.DataType) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if kind == JSON_TEXT and isinstance(value, dict):
        return orjson.dumps(value).decode()
    return value


# Defaults for the non-null columns whose contract field has one (maps are filled while decoded).
EVENT_DEFAULTS: dict[str, Any] = {
    name: _column_default(info.get_default(call_default_factory=True), EVENT_SCHEMA.field(name).type)
    for name, info in EnrichedEvent.model_fields.items()
    if not info.is_required()
    and info.get_default(call_default_factory=True) is not None
    and EVENT_SCHEMA.field(name).type != STRING_MAP
}
# The JSON objects of an event (experiments, properties): the C++ JSON reader infers them, the
# decoder turns them into their columns; every other column is parsed directly to its type.
OBJECT_COLUMNS = tuple(
    name for name, info in EnrichedEvent.model_fields.items() if typing.get_origin(info.annotation) is dict
)
JSON_READER_SCHEMA = pa.schema([f for f in EVENT_SCHEMA if f.name not in OBJECT_COLUMNS])
