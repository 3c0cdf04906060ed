"""The embedded ClickHouse engine answers DDL and queries, including windowFunnel."""

from __future__ import annotations

import json


def test_ddl_insert_and_funnel_query_on_chdb(chdb_session) -> None:
    chdb_session.query("CREATE DATABASE IF NOT EXISTS t")
    chdb_session.query(
        "CREATE TABLE t.events (anonymous_id String, event_type LowCardinality(String), event_ts DateTime64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY (anonymous_id, event_ts)"
    )
    chdb_session.query(
        "INSERT INTO t.events VALUES "
        "('a', 'image_uploaded', '2026-11-26 10:00:00'), ('a', 'tool_selected', '2026-11-26 10:00:05'), "
        "('a', 'image_saved', '2026-11-26 10:01:00'), ('b', 'image_uploaded', '2026-11-26 10:00:00')"
    )
    result = chdb_session.query(
        "SELECT level, count() AS units FROM ("
        " SELECT anonymous_id, windowFunnel(3600)(toDateTime(event_ts), event_type = 'image_uploaded',"
        " event_type = 'tool_selected', event_type = 'image_saved') AS level FROM t.events GROUP BY anonymous_id"
        ") GROUP BY level ORDER BY level",
        "JSONEachRow",
    )
    rows = [json.loads(line) for line in str(result).splitlines() if line]
    assert rows == [{"level": 1, "units": "1"}, {"level": 3, "units": "1"}] or rows == [
        {"level": 1, "units": 1},
        {"level": 3, "units": 1},
    ]
