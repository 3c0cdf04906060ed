"""Tool and inference dimensions: the in-memory tables enrichment reads, fed by compacted topics.

A record on ``dimensions.tools`` / ``dimensions.inferences`` is keyed by its id; the value is a
:class:`~funnelstream.contract.ToolDimension` / :class:`~funnelstream.contract.InferenceDimension`
JSON, and a null value (tombstone) removes the id. The latest record per id wins, so applying the
topic from its beginning rebuilds the table, and applying a new record changes enrichment from the
next event on, without a restart.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from funnelstream.contract import InferenceDimension, ToolDimension
from funnelstream.errors import FieldError
from stream_processors.errors import DimensionFileError

SEED_FILE = Path(__file__).with_name("seed_dimensions.json")


@dataclass(frozen=True, slots=True)
class DimensionValue:
    name: str
    type: str


def _tool_entry(value: bytes) -> tuple[int, DimensionValue]:
    tool = ToolDimension.model_validate_json(value)
    return tool.tool_id, DimensionValue(tool.tool_name, tool.tool_type)


def _inference_entry(value: bytes) -> tuple[int, DimensionValue]:
    inference = InferenceDimension.model_validate_json(value)
    return inference.inference_id, DimensionValue(inference.inference_name, inference.inference_type)


@dataclass
class DimensionStore:
    """Current tool and inference dimensions. Written by one feed, read by the processor."""

    tools: dict[int, DimensionValue] = field(default_factory=dict)
    inferences: dict[int, DimensionValue] = field(default_factory=dict)
    applied: int = 0
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def apply_tool(self, key: bytes | None, value: bytes | None) -> None:
        self._apply(self.tools, key, value, _tool_entry)

    def apply_inference(self, key: bytes | None, value: bytes | None) -> None:
        self._apply(self.inferences, key, value, _inference_entry)

    def _apply(
        self,
        table: dict[int, DimensionValue],
        key: bytes | None,
        value: bytes | None,
        entry_of: Callable[[bytes], tuple[int, DimensionValue]],
    ) -> None:
        if value is None:
            if key is not None and key.isdigit():
                with self._lock:
                    table.pop(int(key), None)
                    self.applied += 1
            return
        try:
            dimension_id, entry = entry_of(value)
        except ValidationError:
            self.rejected += 1
            return
        with self._lock:
            # Replace the whole dict entry in one assignment: readers never see half a record.
            table[dimension_id] = entry
            self.applied += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "tools": {str(k): {"name": v.name, "type": v.type} for k, v in sorted(self.tools.items())},
                "inferences": {str(k): {"name": v.name, "type": v.type} for k, v in sorted(self.inferences.items())},
                "applied": self.applied,
                "rejected": self.rejected,
            }


@dataclass(frozen=True, slots=True)
class DimensionFile:
    tools: list[ToolDimension]
    inferences: list[InferenceDimension]


def read_dimension_file(path: Path, updated_at: Any) -> DimensionFile:
    """Parse a JSON file ``{"tools": [...], "inferences": [...]}``; every bad entry is named."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DimensionFileError(str(path), [FieldError("file", str(exc))]) from None
    if not isinstance(raw, dict):
        raise DimensionFileError(str(path), [FieldError("file", "expected a JSON object with tools and inferences")])
    unknown = set(raw) - {"tools", "inferences"}
    errors = [FieldError(name, "unknown section; expected tools or inferences") for name in sorted(unknown)]
    tools = _entries(raw.get("tools", []), "tools", ToolDimension, updated_at, errors)
    inferences = _entries(raw.get("inferences", []), "inferences", InferenceDimension, updated_at, errors)
    if errors:
        raise DimensionFileError(str(path), errors)
    return DimensionFile(tools=tools, inferences=inferences)  # type: ignore[arg-type]


def _entries(
    entries: Any,
    section: str,
    model: type[ToolDimension] | type[InferenceDimension],
    updated_at: Any,
    errors: list[FieldError],
) -> list[ToolDimension | InferenceDimension]:
    if not isinstance(entries, list):
        errors.append(FieldError(section, "expected a list"))
        return []
    parsed: list[ToolDimension | InferenceDimension] = []
    seen: set[int] = set()
    id_field = "tool_id" if model is ToolDimension else "inference_id"
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors.append(FieldError(f"{section}[{index}]", "expected an object"))
            continue
        try:
            record = model.model_validate({"updated_at": updated_at, **entry})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(part) for part in err["loc"])
                errors.append(FieldError(f"{section}[{index}].{loc}", err["msg"]))
            continue
        record_id = getattr(record, id_field)
        if record_id in seen:
            errors.append(FieldError(f"{section}[{index}].{id_field}", f"duplicate id {record_id}"))
            continue
        seen.add(record_id)
        parsed.append(record)
    return parsed


def apply_all(store: DimensionStore, file: DimensionFile) -> None:
    """Load a parsed file straight into a store (tests and tools that run without Kafka)."""
    for tool in file.tools:
        store.apply_tool(str(tool.tool_id).encode(), tool.model_dump_json().encode())
    for inference in file.inferences:
        store.apply_inference(str(inference.inference_id).encode(), inference.model_dump_json().encode())


def dimension_records(file: DimensionFile) -> Iterable[tuple[str, bytes, bytes]]:
    """(kind, key, value) for every entry; kind is ``tools`` or ``inferences``."""
    for tool in file.tools:
        yield "tools", str(tool.tool_id).encode(), tool.model_dump_json().encode()
    for inference in file.inferences:
        yield "inferences", str(inference.inference_id).encode(), inference.model_dump_json().encode()
