"""Migrations apply once, record themselves, refuse edits, and render cluster DDL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clickhouse.backend import Warehouse
from clickhouse.errors import MigrationError
from clickhouse.migrate import Migration, discover, migrate, render
from tests.helpers.event_rows import EXPERIMENT_RANGE_SQL, event, insert_events
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse


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


IMAGE = "6d0c1a8e-0000-4000-8000-0000000000aa"


def _durations(warehouse: Warehouse) -> list[dict[str, Any]]:
    return warehouse.query_rows(
        "SELECT toString(input_id) AS input_id, anonymous_id, diff_second, saved_at IS NULL AS unsaved, over_cap "
        "FROM task_durations ORDER BY input_id"
    )


def test_task_time_ends_at_the_save_of_an_inferred_result(warehouse: Warehouse) -> None:
    # A save before any inference does not end the task.
    insert_events(
        warehouse,
        [
            event("tool_selected", "2026-03-01 10:00:20", input_id=IMAGE),
            event("image_saved", "2026-03-01 10:00:23", input_id=IMAGE),
            event("inference_requested", "2026-03-01 10:00:25", input_id=IMAGE),
            event("image_saved", "2026-03-01 10:00:40", input_id=IMAGE),
        ],
    )
    assert _durations(warehouse) == [
        {"input_id": IMAGE, "anonymous_id": "device-1", "diff_second": 20.0, "unsaved": 0, "over_cap": 0}
    ]


def test_task_time_over_the_cap_is_kept_unsaved(warehouse: Warehouse) -> None:
    at_cap, over = IMAGE, IMAGE.replace("aa", "bb")
    insert_events(
        warehouse,
        [
            event("tool_selected", "2026-03-01 10:00:00", input_id=at_cap),
            event("inference_requested", "2026-03-01 10:10:00", input_id=at_cap),
            event("image_saved", "2026-03-01 11:00:00", input_id=at_cap),
            event("tool_selected", "2026-03-01 10:00:00", input_id=over),
            event("inference_requested", "2026-03-01 10:10:00", input_id=over),
            event("image_saved", "2026-03-01 11:00:00.001", input_id=over),
        ],
    )
    assert _durations(warehouse) == [
        {"input_id": at_cap, "anonymous_id": "device-1", "diff_second": 3600.0, "unsaved": 0, "over_cap": 0},
        {"input_id": over, "anonymous_id": "device-1", "diff_second": None, "unsaved": 1, "over_cap": 1},
    ]


def test_task_time_belongs_to_the_device_of_the_first_tool_click(warehouse: Warehouse) -> None:
    insert_events(
        warehouse,
        [
            event("image_uploaded", "2026-03-01 09:59:00", input_id=IMAGE, anonymous_id="device-a"),
            event("tool_selected", "2026-03-01 10:00:05", input_id=IMAGE, anonymous_id="device-a"),
            event("tool_selected", "2026-03-01 10:00:00", input_id=IMAGE, anonymous_id="device-z"),
        ],
    )
    assert [row["anonymous_id"] for row in _durations(warehouse)] == ["device-z"]


EXPERIMENT = {"experiment": "checkout", "from": "2026-03-01 00:00:00", "to": "2026-03-02 00:00:00"}


def _exposure(device: str, ts: str, variant: str, **columns: Any) -> dict[str, Any]:
    return event(
        "experiment_exposure",
        ts,
        anonymous_id=device,
        experiment_key="checkout",
        variant=variant,
        experiments={"checkout": variant},
        **columns,
    )


def _units(warehouse: Warehouse) -> dict[str, tuple[str, str, int]]:
    rows = warehouse.query_rows(
        f"SELECT anonymous_id, variant, toString(first_exposure_at) AS at, contaminated "
        f"FROM experiment_units({EXPERIMENT_RANGE_SQL})",
        EXPERIMENT,
    )
    return {row["anonymous_id"]: (row["variant"], row["at"], row["contaminated"]) for row in rows}


def test_experiment_units_arm_first_exposure_and_contamination(warehouse: Warehouse) -> None:
    insert_events(
        warehouse,
        [
            # A person on two devices in two arms: all three of U1's devices are contaminated.
            _exposure("a", "2026-03-01 10:00:00", "control", user_id="U1"),
            _exposure("b", "2026-03-01 10:00:00", "treatment"),
            event("image_uploaded", "2026-03-01 11:00:00", anonymous_id="b", user_id="U1"),
            _exposure("c", "2026-03-01 10:00:00", "control", user_id="U1"),
            # U2 in one arm on two devices: clean.
            _exposure("d", "2026-03-01 10:00:00", "treatment", user_id="U2"),
            _exposure("e", "2026-03-01 10:00:00", "treatment", user_id="U2"),
            # Two variants among the exposures; the first one is the arm.
            _exposure("f", "2026-03-01 10:00:01", "treatment"),
            _exposure("f", "2026-03-01 10:00:00", "control"),
            # An event after the first exposure naming another variant.
            _exposure("g", "2026-03-01 10:00:00", "control"),
            event("tool_selected", "2026-03-01 10:05:00", anonymous_id="g", experiments={"checkout": "treatment"}),
            # Naming another variant before the first exposure does not count.
            _exposure("h", "2026-03-01 10:00:00", "control"),
            event("tool_selected", "2026-03-01 09:05:00", anonymous_id="h", experiments={"checkout": "treatment"}),
            # A forced exposure is no exposure: i stays a clean control unit, j is no unit.
            _exposure("i", "2026-03-01 10:00:00", "control"),
            _exposure("i", "2026-03-01 09:00:00", "treatment", properties='{"assignment_source": "forced"}'),
            _exposure("j", "2026-03-01 10:00:00", "treatment", properties='{"assignment_source": "forced"}'),
            # Out of the range, or another experiment: no unit.
            _exposure("k", "2026-03-02 00:00:00", "control"),
            event("experiment_exposure", "2026-03-01 10:00:00", anonymous_id="l", experiment_key="other", variant="x"),
        ],
    )
    assert _units(warehouse) == {
        "a": ("control", "2026-03-01 10:00:00.000", 1),
        "b": ("treatment", "2026-03-01 10:00:00.000", 1),
        "c": ("control", "2026-03-01 10:00:00.000", 1),
        "d": ("treatment", "2026-03-01 10:00:00.000", 0),
        "e": ("treatment", "2026-03-01 10:00:00.000", 0),
        "f": ("control", "2026-03-01 10:00:00.000", 1),
        "g": ("control", "2026-03-01 10:00:00.000", 1),
        "h": ("control", "2026-03-01 10:00:00.000", 0),
        "i": ("control", "2026-03-01 10:00:00.000", 0),
    }


def test_experiment_task_durations_keep_clean_units_after_their_exposure(warehouse: Warehouse) -> None:
    images = {name: f"6d0c1a8e-0000-4000-8000-0000000000{index:02d}" for index, name in enumerate("pqrs")}

    def task(image: str, device: str, click: str, save: str) -> list[dict[str, Any]]:
        return [
            event("tool_selected", click, input_id=image, anonymous_id=device),
            event("inference_requested", click, input_id=image, anonymous_id=device),
            event("image_saved", save, input_id=image, anonymous_id=device),
        ]

    insert_events(
        warehouse,
        [
            _exposure("clean", "2026-03-01 10:00:00", "control"),
            *task(images["p"], "clean", "2026-03-01 10:01:00", "2026-03-01 10:01:30"),
            *task(images["q"], "clean", "2026-03-01 09:01:00", "2026-03-01 10:01:30"),  # before its exposure
            _exposure("split", "2026-03-01 10:00:00", "treatment"),
            _exposure("split", "2026-03-01 10:00:05", "control"),
            *task(images["r"], "split", "2026-03-01 10:01:00", "2026-03-01 10:01:30"),  # contaminated unit
            *task(images["s"], "outsider", "2026-03-01 10:01:00", "2026-03-01 10:01:30"),  # no unit
        ],
    )
    rows = warehouse.query_rows(
        f"SELECT toString(input_id) AS input_id, anonymous_id, variant, diff_second "
        f"FROM experiment_task_durations({EXPERIMENT_RANGE_SQL})",
        EXPERIMENT,
    )
    assert rows == [{"input_id": images["p"], "anonymous_id": "clean", "variant": "control", "diff_second": 30.0}]


def test_cluster_rendering_leaves_views_on_the_cluster_reading_the_distributed_tables() -> None:
    views = next(m for m in discover() if m.version == 8)
    statements = render(views, database="fs", cluster="prod")
    assert [s.split(" AS", 1)[0] for s in statements] == [
        "CREATE OR REPLACE VIEW task_durations ON CLUSTER `prod`",
        "CREATE OR REPLACE VIEW experiment_units ON CLUSTER `prod`",
        "CREATE OR REPLACE VIEW experiment_task_durations ON CLUSTER `prod`",
    ]
    assert all("_local" not in s and "FROM events FINAL" in s for s in statements[:2])


def test_cluster_rendering_rebuilds_events_behind_the_distributed_table() -> None:
    rebuild = next(m for m in discover() if m.version == 9)
    statements = render(rebuild, database="fs", cluster="prod")
    local = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS events_ranked_local"))
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fs/events_ranked_local', " in local
    assert "'{replica}', copy_rank)" in local
    assert "ORDER BY (toDate(client_ts), anonymous_id, client_ts, event_id)" in local
    assert (
        "CREATE TABLE IF NOT EXISTS events_ranked ON CLUSTER `prod` AS events_ranked_local\n"
        "ENGINE = Distributed(`prod`, fs, events_ranked_local, cityHash64(anonymous_id))"
    ) in statements
    assert (
        "RENAME TABLE events_local TO events_before_0009_local, events_ranked_local TO events_local ON CLUSTER `prod`"
        in statements
    )
    drops = [s for s in statements if s.startswith("DROP TABLE")]
    assert drops[-2:] == [
        "DROP TABLE IF EXISTS events_before_0009 ON CLUSTER `prod` SYNC",
        "DROP TABLE IF EXISTS events_before_0009_local ON CLUSTER `prod` SYNC",
    ]
    views = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == 7 and all("FROM events_local" in v and "_local AS" in v for v in views)
    assert views[0].startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS events_forward_0009 ON CLUSTER `prod` TO events_ranked_local AS"
    )
    # The copy runs on each shard, from the old local table into the new one.
    copy = next(s for s in statements if s.startswith("INSERT INTO events_ranked"))
    assert "parallel_distributed_insert_select = 2" in copy and copy.endswith("FROM events")
    single = render(rebuild, database="fs", cluster=None)
    assert "RENAME TABLE events TO events_before_0009, events_ranked TO events" in single


def test_events_keep_the_first_received_copy_and_feed_the_fact_tables(warehouse: Warehouse) -> None:
    first = event("tool_selected", "2026-03-01 10:10:00", input_id=IMAGE, tool_id=3, received_at="2026-03-01 10:10:05")
    resent = {**first, "event_ts": "2026-03-01 10:00:00", "received_at": "2026-03-01 10:20:00"}
    resent["enriched_at"] = resent["received_at"]
    insert_events(warehouse, [first])
    insert_events(warehouse, [resent])
    query = "SELECT toString(event_ts) AS ts FROM events FINAL"
    before = warehouse.query_rows(query)
    warehouse.command("OPTIMIZE TABLE events FINAL")
    assert before == warehouse.query_rows(query) == [{"ts": "2026-03-01 10:10:00.000"}]
    clicks = warehouse.query_rows("SELECT toString(clicked_at) AS at FROM tool_clicks ORDER BY at")
    assert clicks == [{"at": "2026-03-01 10:00:00.000"}, {"at": "2026-03-01 10:10:00.000"}]


def test_rebuilding_events_keeps_its_rows_and_the_fact_tables(shared_chdb_path: Path, tmp_path: Path) -> None:
    for migration in discover():
        if migration.version != 9:
            (tmp_path / f"{migration.version:04d}_{migration.name}.sql").write_text(migration.sql)
    rebuild = next(m for m in discover() if m.version == 9)
    warehouse, _ = open_test_warehouse("chdb", shared_chdb_path)
    try:
        warehouse.command(f"DROP DATABASE {warehouse.database}")
        warehouse.command(f"CREATE DATABASE {warehouse.database}")
        migrate(warehouse, directory=tmp_path)
        first = event("tool_selected", "2026-03-01 10:10:00", input_id=IMAGE, tool_id=3)
        insert_events(warehouse, [first, event("image_uploaded", "2026-03-01 10:00:00", input_id=IMAGE)])
        later = "2026-03-01 10:30:00"
        insert_events(warehouse, [{**first, "received_at": later, "enriched_at": later}])
        # The rebuild statement by statement, with a loader batch arriving while the copy runs.
        for statement in render(rebuild, database=warehouse.database, cluster=None):
            warehouse.command(statement)
            if statement.startswith("INSERT INTO events_ranked"):
                insert_events(warehouse, [event("image_saved", "2026-03-01 10:20:00", input_id=IMAGE)])
        # Not recorded, so migrate runs the whole file again on the rebuilt table: it completes.
        assert migrate(warehouse).applied == ["0009_events_first_received_copy"]
        events = warehouse.query_rows(
            "SELECT event_type, toString(received_at) AS received_at FROM events FINAL ORDER BY event_type"
        )
        assert events == [
            {"event_type": "image_saved", "received_at": "2026-03-01 10:20:00.000"},
            {"event_type": "image_uploaded", "received_at": "2026-03-01 10:00:00.000"},
            {"event_type": "tool_selected", "received_at": "2026-03-01 10:10:00.000"},
        ]
        tables = {
            row["name"]
            for row in warehouse.query_rows("SELECT name FROM system.tables WHERE database = currentDatabase()")
        }
        assert not {"events_before_0009", "events_ranked", "events_forward_0009"} & tables
        # The copies fed no fact table: two clicks loaded, two rows; the batch during the copy fed its own.
        assert warehouse.query_rows("SELECT count() AS n FROM tool_clicks") == [{"n": 2}]
        assert warehouse.query_rows("SELECT count() AS n FROM save_clicks") == [{"n": 1}]
        insert_events(warehouse, [event("tool_selected", "2026-03-01 11:00:00", input_id=IMAGE, tool_id=4)])
        assert warehouse.query_rows("SELECT count() AS n FROM tool_clicks") == [{"n": 3}]
        assert warehouse.query_rows("SELECT diff_second IS NULL AS unsaved FROM task_durations") == [{"unsaved": 1}]
    finally:
        drop_and_close(warehouse)
