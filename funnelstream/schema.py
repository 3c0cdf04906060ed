"""JSON Schema for every event type, for frontends written in any language."""

from __future__ import annotations

import json
from pathlib import Path

from funnelstream.contract import EVENT_ADAPTER, EVENT_MODELS


def write_schemas(out_dir: Path) -> list[Path]:
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
