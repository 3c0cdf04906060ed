"""Load a dead-letter topic into a fresh chdb warehouse with the real loader, in its own process.

chdb allows one data path per process, so the security tests run this as
``python -m tests.helpers.collector_abuse <bootstrap> <chdb path> <topics as JSON>``; it prints the
rows of ``dlq_events`` as one JSON line.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.helpers.loader import run_loader_until

LOADED_COLUMNS = "stage, reason, payload, payload_truncated, payload_bytes, event_id, original_key"


def load_dead_letters(bootstrap: str, chdb_path: Path, topics: dict[str, str], expect: int) -> list[dict[str, Any]]:
    from clickhouse.backend import open_warehouse
    from clickhouse.loader import Loader
    from clickhouse.migrate import migrate
    from clickhouse.settings import LoaderConfig, WarehouseSettings
    from funnelstream.settings import ClickHouseConfig, KafkaConfig

    config = ClickHouseConfig(chdb_path=chdb_path, database=f"fs_abuse_{uuid.uuid4().hex[:8]}")
    warehouse = open_warehouse(config)
    migrate(warehouse)
    settings = WarehouseSettings(
        kafka=KafkaConfig(bootstrap_servers=bootstrap),
        clickhouse=config,
        loader=LoaderConfig(group_id=f"abuse-loader-{uuid.uuid4().hex[:8]}", batch_seconds=0.3, **topics),
    )
    loader = Loader(settings, warehouse)
    run_loader_until(loader, lambda: loader.stats.rows_inserted.get("dlq_events", 0) >= expect)
    rows: list[dict[str, Any]] = warehouse.query_rows(f"SELECT {LOADED_COLUMNS} FROM dlq_events FINAL")
    return rows


if __name__ == "__main__":
    loaded = load_dead_letters(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]))
    print(json.dumps(loaded, default=str))
