"""Decoding: a batch's messages as one Arrow table per warehouse table, and the rejects.

Two paths for ``events``. The fast one parses the whole batch in C++ (pyarrow's JSON reader,
explicit schema) and checks required columns vectorized; anything it cannot vouch for raises
:class:`FastPathRefused` and the batch is decoded again message by message with the contract
model, each failing message becoming a :class:`Rejected` while the rest loads.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from pydantic import BaseModel, ValidationError

from clickhouse.loader.messages import Message, Rejected
from clickhouse.loader.rows import dlq_row, event_row, plain_row, session_row, unreadable_dlq_row
from clickhouse.loader.schema import (
    DLQ_SCHEMA,
    EVENT_DEFAULTS,
    EVENT_FIELDS,
    EVENT_SCHEMA,
    INFERENCE_SCHEMA,
    JSON_READER_SCHEMA,
    REQUIRED_EVENT_COLUMNS,
    SESSION_SCHEMA,
    TOOL_SCHEMA,
)
from funnelstream.contract import DeadLetter, EnrichedEvent, InferenceDimension, SessionSummary, ToolDimension
from funnelstream.errors import FieldError

log = logging.getLogger("funnelstream.warehouse.loader")


class FastPathRefused(Exception):
    """The batch needs message-by-message decoding; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- the fast path ---------------------------------------------------------------------------------


def _struct_to_map(column: pa.ChunkedArray | pa.Array, rows: int) -> pa.Array:
    """An inferred JSON struct (keys seen in the batch as fields) as a map of its non-null keys.

    Vectorized: keys and values are laid out row-major over every field, then the nulls dropped.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    struct_type = column.type
    if pa.types.is_null(struct_type) or (pa.types.is_struct(struct_type) and struct_type.num_fields == 0):
        return pa.MapArray.from_arrays(
            np.zeros(rows + 1, np.int32), pa.array([], pa.string()), pa.array([], pa.string())
        )
    if not pa.types.is_struct(struct_type):
        raise FastPathRefused(f"experiments: expected an object of strings, got {struct_type}")
    width = struct_type.num_fields
    children = []
    for index in range(width):
        child_type = struct_type.field(index).type
        if not (pa.types.is_string(child_type) or pa.types.is_null(child_type)):
            raise FastPathRefused(f"experiments.{struct_type.field(index).name}: expected a string, got {child_type}")
        child = column.field(index)
        if column.null_count:
            child = pc.if_else(column.is_valid(), child, pa.nulls(rows, child.type))
        children.append(child.cast(pa.string()))
    order = (np.arange(width)[None, :] * rows + np.arange(rows)[:, None]).ravel()
    values = pa.concat_arrays(children).take(pa.array(order))
    keys = pa.array(
        np.tile(np.array([struct_type.field(i).name for i in range(width)], dtype=object), rows), pa.string()
    )
    present = values.is_valid()
    counts = np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.int32).reshape(rows, width).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.MapArray.from_arrays(offsets, keys.filter(present), values.filter(present))


def _properties_column(parsed: pa.Table, payloads: list[bytes]) -> pa.Array:
    if "properties" not in parsed.column_names:
        return pa.array(["{}"] * len(payloads), pa.string())
    column = parsed.column("properties").combine_chunks()
    if pa.types.is_struct(column.type) and column.type.num_fields == 0:
        return pa.array(["{}"] * len(payloads), pa.string())
    # Rare: free-form properties are kept as JSON text, re-serialized from the message itself.
    return pa.array(
        [orjson.dumps(orjson.loads(payload).get("properties") or {}).decode() for payload in payloads],
        pa.string(),
    )


def decode_events_fast(payloads: list[bytes]) -> pa.Table:
    """A whole batch of EnrichedEvent JSON parsed in one call; refuses anything unusual."""
    data = b"\n".join(payloads)
    if data.count(b"\n") != len(payloads) - 1:
        raise FastPathRefused("a message spans lines")
    try:
        parsed = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 20)),
            parse_options=pj.ParseOptions(explicit_schema=JSON_READER_SCHEMA, unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise FastPathRefused(f"JSON reader: {exc}") from None
    rows = parsed.num_rows
    if rows != len(payloads):
        raise FastPathRefused(f"{rows} rows parsed from {len(payloads)} messages")
    unknown = set(parsed.column_names) - EVENT_FIELDS
    if unknown:
        raise FastPathRefused(f"unknown fields {sorted(unknown)}")
    for name in REQUIRED_EVENT_COLUMNS:
        if parsed.column(name).null_count:
            raise FastPathRefused(f"{name}: missing in some messages")
    columns: list[pa.Array | pa.ChunkedArray] = []
    for field_ in EVENT_SCHEMA:
        name = field_.name
        if name == "experiments":
            present = name in parsed.column_names
            columns.append(_struct_to_map(parsed.column(name) if present else pa.nulls(rows), rows))
        elif name == "properties":
            columns.append(_properties_column(parsed, payloads))
        else:
            column = parsed.column(name)
            if name in EVENT_DEFAULTS and column.null_count:
                column = pc.fill_null(column, EVENT_DEFAULTS[name])
            columns.append(column)
    return pa.table(columns, schema=EVENT_SCHEMA)


# --- message by message ----------------------------------------------------------------------------


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in err["loc"]) or "record", err["msg"])
        for err in exc.errors(include_url=False)
    ]


def _event_id_of(payload: bytes) -> str | None:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return str(event_id) if event_id is not None else None


def decode_checked(
    messages: list[Message], model: type[BaseModel], to_row: Callable[[Any, Message], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    rows, rejected = [], []
    for message in messages:
        try:
            record = model.model_validate_json(message.value)
        except ValidationError as exc:
            errors = _field_errors(exc)
            reason = "; ".join(str(e) for e in errors)[:1000]
            rejected.append(Rejected(message, reason, errors, _event_id_of(message.value)))
            continue
        rows.append(to_row(record, message))
    return rows, rejected


def decode_events(messages: list[Message]) -> tuple[pa.Table, list[Rejected]]:
    try:
        return decode_events_fast([m.value for m in messages]), []
    except FastPathRefused as refused:
        log.info("loader batch decoded message by message: %s", refused.reason)
    rows, rejected = decode_checked(messages, EnrichedEvent, lambda event, _: event_row(event))
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), rejected


# --- a whole batch ---------------------------------------------------------------------------------


@dataclass
class Decoded:
    """A batch decoded: the tables to insert, in insert order, and the messages to dead-letter."""

    tables: list[tuple[str, pa.Table]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


# (kind of topic, table, model, schema, row conversion) for the tables decoded model by model.
_CHECKED_TABLES: tuple[tuple[str, str, type[BaseModel], pa.Schema, Callable[[Any, Message], dict[str, Any]]], ...] = (
    ("sessions", "sessions", SessionSummary, SESSION_SCHEMA, session_row),
    ("tools", "tools", ToolDimension, TOOL_SCHEMA, plain_row),
    ("inferences", "inferences", InferenceDimension, INFERENCE_SCHEMA, plain_row),
)


def decode_batch(by_kind: Mapping[str, list[Message]]) -> Decoded:
    """Each kind of message (events, sessions, tools, inferences, dlq) as its table's rows.

    A malformed dead letter is stored in ``dlq_events`` as such, never dead-lettered again.
    """
    decoded = Decoded()
    if by_kind.get("events"):
        events, bad = decode_events(by_kind["events"])
        decoded.tables.append(("events", events))
        decoded.rejected.extend(bad)
    for kind, table, model, schema, to_row in _CHECKED_TABLES:
        if by_kind.get(kind):
            rows, bad = decode_checked(by_kind[kind], model, to_row)
            decoded.tables.append((table, pa.Table.from_pylist(rows, schema=schema)))
            decoded.rejected.extend(bad)
    if by_kind.get("dlq"):
        rows, bad = decode_checked(by_kind["dlq"], DeadLetter, dlq_row)
        rows += [unreadable_dlq_row(item) for item in bad]
        decoded.tables.append(("dlq_events", pa.Table.from_pylist(rows, schema=DLQ_SCHEMA)))
    return decoded
