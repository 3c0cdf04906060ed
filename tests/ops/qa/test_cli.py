"""``funnelstream qa run`` gates a job by its exit code and prints a table of the checks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clickhouse.qa.checks import CHECKS
from ops.cli import _mount_service_commands, app
from tests.helpers.qa_warehouse import (
    NOW,
    load_events,
    load_sessions,
    open_warehouse,
    orphan_tool_clicks,
    simulated,
)

pytestmark = pytest.mark.integration

runner = CliRunner()
WINDOW = ["--from", (NOW - timedelta(hours=8)).isoformat(), "--to", NOW.isoformat()]


@pytest.fixture(scope="module", autouse=True)
def _commands_mounted() -> None:
    if not any(group.name == "qa" for group in app.registered_groups):
        _mount_service_commands()


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """The commands point the root logger at the runner's stderr, which closes after each call."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def chdb_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "chdb"
    monkeypatch.setenv("FS_CLICKHOUSE__CHDB_PATH", str(path))
    monkeypatch.setenv("FS_CLICKHOUSE__DATABASE", "funnelstream")
    monkeypatch.setenv("FS_LOG_JSON", "false")
    monkeypatch.setenv("COLUMNS", "240")
    warehouse = open_warehouse(path)
    events, sessions = simulated(users=150, window=timedelta(hours=6), now=NOW)
    load_events(warehouse, events)
    load_sessions(warehouse, sessions)
    warehouse.close()
    return path


def test_clean_data_exits_zero_and_records_the_run(chdb_path: Path) -> None:
    result = runner.invoke(app, ["qa", "run", *WINDOW])
    assert result.exit_code == 0, result.output
    assert "orphan_steps" in result.output and "pass" in result.output
    warehouse = open_warehouse(chdb_path)
    try:
        rows = warehouse.query_rows("SELECT count() AS n, uniqExact(run_id) AS runs FROM qa_results")
    finally:
        warehouse.close()
    assert rows == [{"n": len(CHECKS), "runs": 1}]


def test_a_failing_error_check_exits_one(chdb_path: Path) -> None:
    warehouse = open_warehouse(chdb_path)
    at = NOW - timedelta(hours=2)
    orphans = orphan_tool_clicks(20, at)
    load_events(warehouse, orphans)
    warehouse.close()
    result = runner.invoke(app, ["qa", "run", *WINDOW, "--check", "orphan_steps", "--no-write"])
    assert result.exit_code == 1, result.output
    assert "fail" in result.output and "tool_selected without an upload" in result.output


def test_a_warning_fails_the_run_only_when_asked(chdb_path: Path) -> None:
    warehouse = open_warehouse(chdb_path)
    warehouse.command("SYSTEM STOP MERGES events")
    rows = warehouse.query_rows("SELECT event_id FROM events LIMIT 50")
    warehouse.command(
        "INSERT INTO events SELECT * EXCEPT inserted_at, now64(3) FROM events WHERE event_id IN {ids:Array(UUID)}",
        {"ids": [row["event_id"] for row in rows]},
    )
    warehouse.close()
    args = ["qa", "run", *WINDOW, "--check", "duplicates", "--no-write"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, [*args, "--fail-on", "warning"])
    assert result.exit_code == 1, result.output


def test_bad_input_is_named(chdb_path: Path) -> None:
    result = runner.invoke(app, ["qa", "run", "--from", "yesterday"])
    assert result.exit_code == 2
    assert "--from" in result.output
    result = runner.invoke(app, ["qa", "run", "--check", "no_such_check", "--no-write"])
    assert result.exit_code == 2
    assert "no_such_check" in result.output


def test_status_shows_freshness_and_exits_one_when_the_pipeline_is_down(
    chdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from ops.heartbeat import make_heartbeat
    from tests.helpers.heartbeats import enriched

    monkeypatch.setenv("FS_QA__CONSUMER_GROUPS", "{}")
    # Nothing listens there: status falls back to reading the warehouse itself.
    monkeypatch.setenv("FS_WAREHOUSE__API_URL", "http://127.0.0.1:1")
    result = runner.invoke(app, ["status", "--no-services"])
    assert result.exit_code == 1, result.output
    assert "no heartbeat in the last day" in result.output
    warehouse = open_warehouse(chdb_path)
    load_events(warehouse, [enriched(make_heartbeat("test", datetime.now(UTC)))])
    warehouse.close()
    result = runner.invoke(app, ["status", "--no-services"])
    assert result.exit_code == 0, result.output
    assert "end to end" in result.output and "ok" in result.output
