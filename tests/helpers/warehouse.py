"""An embedded warehouse for the tests, filled through the project's own enrichment and loader code."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse.backend import Warehouse, open_warehouse
from clickhouse.loader import Message, decode_events
from clickhouse.migrate import migrate
from funnelstream.contract import FUNNEL_STEP_OF, EnrichedEvent, EventType, parse_event_json
from funnelstream.settings import ClickHouseConfig


def open_test_warehouse(path: Path) -> Warehouse:
    warehouse = open_warehouse(ClickHouseConfig(chdb_path=path))
    migrate(warehouse)
    return warehouse


def load(warehouse: Warehouse, events: Iterable[EnrichedEvent]) -> int:
    messages = [
        Message("events.enriched", 0, offset, e.anonymous_id.encode(), e.model_dump_json().encode())
        for offset, e in enumerate(events)
    ]
    table, rejected = decode_events(messages)
    assert not rejected, rejected
    return warehouse.insert_arrow("events", table)


def enrich_raw(payload: bytes, session_id: str = "s-1") -> EnrichedEvent:
    """events.raw → events.enriched with the stream processors' enricher and the seed dimensions."""
    from stream_processors.dimensions import SEED_FILE, DimensionStore, apply_all, read_dimension_file
    from stream_processors.enrich import Enricher, UserAgentParser

    store = DimensionStore()
    apply_all(store, read_dimension_file(SEED_FILE, datetime(2026, 1, 1, tzinfo=UTC)))
    event = parse_event_json(payload)
    assert event.event_ts is not None and event.received_at is not None
    row = Enricher(store, UserAgentParser()).enrich(
        event,
        event_ts=event.event_ts,
        received_at=event.received_at,
        session_id=session_id,
        is_late=False,
        enriched_at=datetime.now(UTC),
    )
    return EnrichedEvent.model_validate(row)


INFERENCES = {1: ("remove_object", "inpainting"), 2: ("enhance", "super_resolution"), 3: ("deblur", "deblurring")}


def enriched(event_type: EventType, at: datetime, anonymous_id: str, **fields: Any) -> EnrichedEvent:
    inference_id = fields.get("inference_id")
    if inference_id is not None:
        fields.setdefault("inference_name", INFERENCES[inference_id][0])
        fields.setdefault("inference_type", INFERENCES[inference_id][1])
    return EnrichedEvent(
        event_id=fields.pop("event_id", uuid.uuid4()),
        event_type=event_type,
        schema_version=1,
        anonymous_id=anonymous_id,
        session_id=f"{anonymous_id}:{at:%Y%m%d}",
        client_ts=at,
        received_at=at,
        event_ts=at,
        funnel_step=int(FUNNEL_STEP_OF.get(event_type, 0)),
        enriched_at=at,
        **fields,
    )
