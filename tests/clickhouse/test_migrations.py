"""Migrations apply once, record themselves, refuse edits, and render cluster DDL."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickhouse.backend import Warehouse
from clickhouse.errors import MigrationError
from clickhouse.migrate import Migration, discover, migrate, render


def test_migrate_is_recorded_and_idempotent(warehouse: Warehouse) -> None:
    again = migrate(warehouse)
    assert again.applied == []
    recorded = warehouse.query_rows("SELECT version FROM schema_migrations FINAL ORDER BY version")
    assert [row["version"] for row in recorded] == [m.version for m in discover()]
    tables = {
        row["name"] for row in warehouse.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    assert {
        "events", "input_uploads", "tool_clicks", "inference_clicks", "save_clicks", "scores", "tools",
        "inferences", "tools_dict", "inferences_dict", "sessions", "dlq_events", "experiment_exposures",
        "task_durations",
    } <= tables  # fmt: skip


def test_an_edited_migration_is_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    for migration in discover():
        (tmp_path / f"{migration.version:04d}_{migration.name}.sql").write_text(migration.sql)
    first = discover()[0]
    (tmp_path / f"{first.version:04d}_{first.name}.sql").write_text(first.sql + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(warehouse, directory=tmp_path)


def test_dimension_dictionaries_serve_the_latest_version(warehouse: Warehouse) -> None:
    warehouse.command(
        "INSERT INTO tools VALUES (3, 'segment', 'ai_assist', '2026-01-01 00:00:00'), "
        "(3, 'segmentation', 'ai_assist', '2026-02-01 00:00:00')"
    )
    warehouse.command(f"SYSTEM RELOAD DICTIONARY {warehouse.database}.tools_dict")
    name = warehouse.query_rows(f"SELECT dictGet('{warehouse.database}.tools_dict', 'tool_name', toUInt64(3)) AS n")
    assert name == [{"n": "segmentation"}]


def test_cluster_rendering_makes_replicated_local_tables_behind_distributed_ones() -> None:
    events = next(m for m in discover() if m.name == "events")
    local, distributed = render(events, database="fs", cluster="prod")
    assert local.startswith("CREATE TABLE IF NOT EXISTS events_local ON CLUSTER `prod`")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fs/events_local', '{replica}', enriched_at)"
        in local
    )
    assert "ORDER BY (toDate(client_ts), anonymous_id, client_ts, event_id)" in local
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS events ON CLUSTER `prod` AS events_local\n"
        "ENGINE = Distributed(`prod`, fs, events_local, cityHash64(anonymous_id))"
    )
    facts = next(m for m in discover() if m.name == "fact_tables")
    views = [s for s in render(facts, database="fs", cluster="prod") if "MATERIALIZED VIEW" in s]
    assert views and all(" TO " in v and "_local AS" in v and "FROM events_local" in v for v in views)
    single = render(events, database="fs", cluster=None)
    assert (
        len(single) == 1 and "ON CLUSTER" not in single[0] and "ENGINE = ReplacingMergeTree(enriched_at)" in single[0]
    )


def test_a_cluster_table_without_a_shard_key_is_refused() -> None:
    migration = Migration(
        99, "bad", "CREATE TABLE IF NOT EXISTS t${on_cluster} (a UInt8) ENGINE = MergeTree ORDER BY a;"
    )
    with pytest.raises(MigrationError, match="shard by"):
        render(migration, database="fs", cluster="prod")


def test_task_durations_leave_out_steps_without_an_image(warehouse: Warehouse) -> None:
    image = "6d0c1a8e-0000-4000-8000-000000000001"
    rows = [
        # (event_id, type, input_id, event_ts)
        ("00000000-0000-4000-8000-000000000001", "tool_selected", image, "2026-03-01 10:00:00"),
        ("00000000-0000-4000-8000-000000000002", "inference_requested", image, "2026-03-01 10:00:20"),
        ("00000000-0000-4000-8000-000000000003", "image_saved", image, "2026-03-01 10:01:00"),
        ("00000000-0000-4000-8000-000000000004", "tool_selected", None, "2026-03-01 10:00:00"),
        ("00000000-0000-4000-8000-000000000005", "image_saved", None, "2026-03-01 10:02:00"),
    ]
    values = ", ".join(
        "('{}', '{}', 'device-1', {}, '{ts}', '{ts}', '{ts}')".format(
            event_id, kind, f"'{input_id}'" if input_id else "NULL", ts=ts
        )
        for event_id, kind, input_id, ts in rows
    )
    warehouse.command(
        "INSERT INTO events (event_id, event_type, anonymous_id, input_id, client_ts, event_ts, received_at) "
        f"VALUES {values}"
    )
    durations = warehouse.query_rows("SELECT toString(input_id) AS input_id, diff_second FROM task_durations")
    assert durations == [{"input_id": image, "diff_second": 60.0}]
