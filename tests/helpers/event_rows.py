"""Hand-made rows of ``events`` for warehouse tests: each event is a dict of the columns it sets.

What is not given gets a plain default: a fresh event_id, device ``device-1``, and client_ts,
received_at and enriched_at equal to event_ts, so a test states only what it is about. Rows go in
as one JSONEachRow insert, which fires the materialized views like the loader's inserts do.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from clickhouse.backend import Warehouse

EXPERIMENT_RANGE_SQL = (
    "experiment_key = {experiment:String}, "
    "range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')}"
)


def event(event_type: str, event_ts: str, **columns: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "anonymous_id": "device-1",
        "session_id": "session-1",
        "event_ts": event_ts,
    }
    row.update(columns)
    row.setdefault("client_ts", row["event_ts"])
    row.setdefault("received_at", row["event_ts"])
    row.setdefault("enriched_at", row["received_at"])
    return row


def insert_events(warehouse: Warehouse, rows: list[dict[str, Any]]) -> None:
    """One insert of the rows (one part, as one loader batch)."""
    columns = sorted({name for row in rows for name in row})
    body = "\n".join(json.dumps({name: row.get(name) for name in columns if name in row}) for row in rows)
    warehouse.command(f"INSERT INTO events ({', '.join(columns)}) FORMAT JSONEachRow\n{body}")
