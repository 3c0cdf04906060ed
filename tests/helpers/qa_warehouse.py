"""A warehouse filled the way the pipeline fills it, for planting defects in.

Journeys of :mod:`ops.journeys` go through the contract, are stamped as ingest stamps them
(received_at, event_ts by the clock-skew rule), enriched with the tool and inference dimensions, and
loaded into chdb by the real migrations and the loader's decoder.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from clickhouse.backend import ChdbWarehouse
from clickhouse.loader import Message, decode_events
from clickhouse.migrate import migrate
from funnelstream.contract import EnrichedEvent, SessionSummary
from ops.journeys import collector_payloads, enrich, enriched, journeys, live_spec, session_of, sessions_of

__all__ = ["enrich", "session_of"]


def half_and_half(anonymous_id: str, user_id: str | None) -> str:
    return "treatment" if zlib.crc32((user_id or anonymous_id).encode()) % 2 else "control"


def open_warehouse(path: Path) -> ChdbWarehouse:
    warehouse = ChdbWarehouse(str(path), "funnelstream")
    migrate(warehouse)
    return warehouse


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
    frame = journeys(live_spec(users, seed, end=now, window=window), seed, assign=half_and_half)
    events = enriched(collector_payloads(frame), seed, skew_sigma_s=20.0)
    return events, sessions_of(events)


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
