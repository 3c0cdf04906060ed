"""Schemas derived from the contract's models: JSON Schema for frontends, Arrow for the warehouse.

Owns the one mapping from a model field's Python type to its Arrow type, with the warehouse's
choices made once here: timestamps in microseconds UTC, ``dict[str, str]`` as a map, free-form
JSON (any other dict) as text. Invariant: a column's name, order and type follow its model field.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel

from funnelstream.contract import EVENT_ADAPTER, EVENT_MODELS

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRING_MAP = pa.map_(pa.string(), pa.string())
JSON_TEXT = pa.string()
"""Free-form JSON objects are stored as their serialized text."""

_SCALARS: dict[Any, pa.DataType] = {
    str: pa.string(),
    UUID: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: TIMESTAMP,
    AwareDatetime: TIMESTAMP,
}


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a field annotated ``annotation``; ``X | None`` is a nullable ``X``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return arrow_type(args[0])
    if origin in (Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) != 1:
            raise TypeError(f"no Arrow type for the union {annotation}")
        return arrow_type(present[0])
    if origin is Literal:
        if all(isinstance(arg, str) for arg in args):
            return pa.string()
        raise TypeError(f"no Arrow type for {annotation}")
    if origin is list:
        return pa.list_(arrow_type(args[0]))
    if origin is dict:
        key, value = (arrow_type(arg) if arg is not Any else None for arg in args)
        return STRING_MAP if key == pa.string() and value == pa.string() else JSON_TEXT
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return pa.int64() if issubclass(annotation, int) else pa.string()
        if dataclasses.is_dataclass(annotation):
            hints = typing.get_type_hints(annotation)
            return pa.struct([(f.name, arrow_type(hints[f.name])) for f in dataclasses.fields(annotation)])
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"no Arrow type for {annotation}")


def arrow_schema(model: type[BaseModel], extra: Iterable[tuple[str, pa.DataType]] = ()) -> pa.Schema:
    """One column per field of ``model``, in field order, then the ``extra`` columns."""
    fields = [pa.field(name, arrow_type(info.annotation)) for name, info in model.model_fields.items()]
    return pa.schema([*fields, *(pa.field(name, kind) for name, kind in extra)])


def write_schemas(out_dir: Path) -> list[Path]:
    """JSON Schema for every event type, for frontends written in any language."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://funnelstream.dev/schemas/{event_type}.json"
        path = out_dir / f"{event_type}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    union = out_dir / "event.json"
    union.write_text(json.dumps(EVENT_ADAPTER.json_schema(mode="validation"), indent=2, sort_keys=True) + "\n")
    written.append(union)
    return written
