"""A warehouse filled the way the pipeline fills it, for planting defects in.

Simulated journeys go through the contract, are stamped as ingest stamps them (received_at,
event_ts by the clock-skew rule), enriched with the tool and inference dimensions, and loaded into
chdb by the real migrations and the loader's decoder.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from clickhouse.backend import ChdbWarehouse
from clickhouse.loader import Message, decode_events
from clickhouse.migrate import migrate
from funnelstream.clock import correct_event_ts
from funnelstream.contract import (
    FUNNEL_STEP_OF,
    EnrichedEvent,
    EventType,
    SessionSummary,
    parse_event,
)
from ops.simulate import INFERENCE_IDS, TOOL_IDS, SimulationConfig, simulate

TOOLS = {tool_id: (name, "ai_assist" if name == "segmentation" else "manual") for name, tool_id in TOOL_IDS.items()}
INFERENCES = {
    inference_id: (name, {"remove_object": "inpainting", "enhance": "super_resolution", "deblur": "deblurring"}[name])
    for name, inference_id in INFERENCE_IDS.items()
}
SOURCE = "web"


def half_and_half(anonymous_id: str, user_id: str | None) -> str:
    return "treatment" if zlib.crc32((user_id or anonymous_id).encode()) % 2 else "control"


def open_warehouse(path: Path) -> ChdbWarehouse:
    warehouse = ChdbWarehouse(str(path), "funnelstream")
    migrate(warehouse)
    return warehouse


def enrich(raw: dict[str, Any], *, session_id: str, received_at: datetime, source: str = SOURCE) -> EnrichedEvent:
    """One client event as the processors would write it; ``raw`` must carry sent_at."""
    event = parse_event(raw)
    corrected = correct_event_ts(client_ts=event.client_ts, sent_at=event.sent_at, received_at=received_at)
    fields = event.model_dump(exclude={"context", "received_at", "event_ts", "timestamp_flag", "source"})
    fields.pop("emitted_by", None)
    row: dict[str, Any] = {
        **{k: v for k, v in fields.items() if k in EnrichedEvent.model_fields},
        "session_id": session_id,
        "received_at": received_at,
        "event_ts": corrected.event_ts,
        "timestamp_flag": corrected.flag,
        "source": source,
        "funnel_step": int(FUNNEL_STEP_OF.get(EventType(raw["event_type"]), 0)),
        "library_name": event.context.library_name,
        "library_version": event.context.library_version,
        "enriched_at": received_at + timedelta(milliseconds=50),
    }
    if (tool_id := row.get("tool_id")) is not None:
        if tool_id in TOOLS:
            row["tool_name"], row["tool_type"] = TOOLS[tool_id]
        else:
            row["unknown_dimension"] = True
    if (inference_id := row.get("inference_id")) is not None:
        if inference_id in INFERENCES:
            row["inference_name"], row["inference_type"] = INFERENCES[inference_id]
        else:
            row["unknown_dimension"] = True
    return EnrichedEvent.model_validate(row)


def orphan_tool_clicks(count: int, at: datetime) -> list[EnrichedEvent]:
    """Tool clicks on images that were never uploaded: what the orphan_steps check must catch."""
    return [
        enrich(
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "tool_selected",
                "anonymous_id": "planted",
                "input_id": str(uuid.uuid4()),
                "tool_id": 1,
                "client_ts": at.isoformat(),
                "sent_at": at.isoformat(),
            },
            session_id="planted",
            received_at=at,
        )
        for _ in range(count)
    ]


def simulated(
    *, users: int, window: timedelta, now: datetime, seed: int = 7
) -> tuple[list[EnrichedEvent], list[SessionSummary]]:
    """Clean data: devices send each event a little after it happened, their clocks a little off."""
    rng = np.random.default_rng(seed)
    events: list[EnrichedEvent] = []
    sessions: list[SessionSummary] = []
    config = SimulationConfig(users=users, seed=seed, window=window)
    for journey in simulate(config, half_and_half, now=now):
        skew = timedelta(seconds=float(rng.normal(0, 20)))
        session_events = []
        first = datetime.fromisoformat(journey.events[0]["client_ts"])
        session_id = f"{journey.anonymous_id}:{int(first.timestamp() * 1000)}"
        for raw in journey.events:
            happened = datetime.fromisoformat(raw["client_ts"])
            sent = happened + timedelta(seconds=float(rng.uniform(0.05, 2.0)))
            received = sent + timedelta(milliseconds=float(rng.uniform(20, 300)))
            device = {**raw, "client_ts": (happened + skew).isoformat(), "sent_at": (sent + skew).isoformat()}
            session_events.append(enrich(device, session_id=session_id, received_at=received))
        events.extend(session_events)
        sessions.append(session_of(session_events))
    return events, sessions


def session_of(events: list[EnrichedEvent], *, session_id: str | None = None) -> SessionSummary:
    first, last = events[0], events[-1]
    deepest = max(e.funnel_step for e in events)
    return SessionSummary(
        session_id=session_id or first.session_id,
        anonymous_id=first.anonymous_id,
        user_id=first.user_id,
        started_at=first.event_ts,
        last_event_at=last.event_ts,
        duration_s=(last.event_ts - first.event_ts).total_seconds(),
        event_count=len(events),
        input_ids=sorted({e.input_id for e in events if e.input_id}, key=str),
        deepest_step=deepest,
        experiments=first.experiments,
        closed=True,
        version=len(events),
        updated_at=last.enriched_at,
    )


def load_events(warehouse: ChdbWarehouse, events: Iterable[EnrichedEvent]) -> int:
    messages = [
        Message("events.enriched", 0, offset, None, event.model_dump_json(exclude_none=True).encode())
        for offset, event in enumerate(events)
    ]
    table, rejected = decode_events(messages)
    assert not rejected, rejected[:3]
    return warehouse.insert_arrow("events", table)


def _insert_json(warehouse: ChdbWarehouse, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        body = b"\n".join(orjson.dumps(row) for row in rows).decode()
        warehouse.command(
            f"INSERT INTO {table} SETTINGS date_time_input_format = 'best_effort' FORMAT JSONEachRow\n{body}"
        )


def load_sessions(warehouse: ChdbWarehouse, sessions: Iterable[SessionSummary]) -> None:
    _insert_json(warehouse, "sessions", [s.model_dump(mode="json") for s in sessions])


def load_dead_letters(warehouse: ChdbWarehouse, letters: list[dict[str, Any]]) -> None:
    rows = []
    for offset, letter in enumerate(letters):
        rows.append(
            {
                "stage": "ingest",
                "payload": "{}",
                "payload_encoding": "utf-8",
                "errors": [],
                "dlq_partition": 0,
                "dlq_offset": offset,
                **letter,
            }
        )
    _insert_json(warehouse, "dlq_events", rows)


def new_event_id() -> str:
    return str(uuid.uuid4())


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
