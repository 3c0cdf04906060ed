"""The query API answers the named queries in JSON and CSV and refuses anything but reads."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

import clickhouse.client
from clickhouse import queries
from clickhouse.api import create_app
from clickhouse.backend import AnalystLimits, ChdbWarehouse, Warehouse
from clickhouse.cli import report_app
from clickhouse.errors import ReadOnlyViolation
from clickhouse.loader import Message, decode_events
from clickhouse.queries import Breakdown, FunnelRequest
from clickhouse.settings import SqlLimits, WarehouseSettings
from clickhouse.sqlguard import check_read_only
from clickhouse.workspace import charts
from ops.journeys import clickstream
from tests.helpers.figures import embedded_figures
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

LIMITS = AnalystLimits(
    max_rows=10, max_seconds=5, max_memory_bytes=1 << 28, max_result_bytes=1 << 20, max_threads=1, max_concurrent=1
)
RANGE = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-25T00:00:00Z"}


@pytest.fixture(scope="module")
def api(shared_chdb_path: Path) -> Iterator[tuple[TestClient, Warehouse]]:
    warehouse, config = open_test_warehouse("chdb", shared_chdb_path)
    data = clickstream(images=120, devices=30, seed=3)
    messages = [Message("e", 0, i, None, e.model_dump_json().encode()) for i, e in enumerate(data.deliveries)]
    warehouse.insert_arrow("events", decode_events(messages)[0])
    settings = WarehouseSettings(clickhouse=config, sql=SqlLimits(max_rows=50))
    app = create_app(settings, warehouse=warehouse, run_loader=False)
    with TestClient(app, headers=settings.read_headers) as client:
        yield client, warehouse
    drop_and_close(warehouse)


RunReport = Callable[[list[str]], Result]


@pytest.fixture
def report(api: tuple[TestClient, Warehouse], shared_chdb_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunReport:
    """Runs ``funnelstream report …`` on the api's data, opened by the report itself (no warehouse
    process answers here)."""
    _, warehouse = api
    monkeypatch.setattr(clickhouse.client, "api_is_up", lambda *_args, **_kwargs: False)
    monkeypatch.setenv("FS_CLICKHOUSE__CHDB_PATH", str(shared_chdb_path))
    monkeypatch.setenv("FS_CLICKHOUSE__DATABASE", warehouse.database)
    cli = typer.Typer()
    cli.add_typer(report_app, name="report")
    return lambda arguments: CliRunner().invoke(cli, arguments, env={"COLUMNS": "200"})


def test_funnel_endpoint_equals_the_named_query(api: tuple[TestClient, Warehouse]) -> None:
    client, warehouse = api
    response = client.get("/v1/funnel", params={**RANGE, "breakdown": "variant", "experiment": "segmentation_tool"})
    assert response.status_code == 200, response.text
    body = response.json()
    direct = queries.funnel(
        warehouse,
        FunnelRequest(
            start=datetime(2026, 11, 20, tzinfo=UTC), end=datetime(2026, 11, 25, tzinfo=UTC),
            breakdown=Breakdown.VARIANT, experiment="segmentation_tool",
        ),
    )  # fmt: skip
    assert [(r["breakdown"], r["step"], r["units"]) for r in body["rows"]] == [
        (r["breakdown"], r["step"], r["units"]) for r in direct
    ]
    assert {r["breakdown"] for r in body["rows"]} == {"control", "treatment"}
    # The range is honoured: a range before the data has no rows.
    empty = client.get("/v1/funnel", params={"from": "2025-01-01T00:00:00Z", "to": "2025-01-02T00:00:00Z"})
    assert empty.json()["rows"] == []


def test_csv_output(api: tuple[TestClient, Warehouse]) -> None:
    client, _ = api
    response = client.get("/v1/trends", params={**RANGE, "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    assert lines[0].split(",")[:3] == ["day", "uploaded", "tool"]
    assert len(lines) >= 4


def test_task_times_and_bad_parameters(api: tuple[TestClient, Warehouse]) -> None:
    client, _ = api
    images = client.get("/v1/task-times", params=RANGE).json()["rows"]
    assert images and {"input_id", "diff_second", "first_tool_click_at"} <= set(images[0])
    summary = client.get("/v1/task-times", params={**RANGE, "view": "summary"}).json()["rows"]
    assert summary[0]["images"] == len(images)
    bad = client.get("/v1/funnel", params={**RANGE, "steps": "image_uploaded,teleported"})
    assert bad.status_code == 422 and "teleported" in bad.text


def test_sql_reads_with_a_row_limit(api: tuple[TestClient, Warehouse]) -> None:
    client, _ = api
    response = client.post("/v1/sql", json={"sql": "SELECT number FROM system.numbers LIMIT 1000"})
    assert response.status_code == 200, response.text
    assert response.json()["row_count"] == 50 and response.json()["truncated"] is True
    counted = client.post(
        "/v1/sql",
        json={
            "sql": "SELECT count() AS n FROM events WHERE event_type = {t:String}",
            "parameters": {"t": "image_saved"},
        },
    )
    assert counted.json()["rows"][0]["n"] > 0


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("INSERT INTO events (event_id) VALUES (generateUUIDv4())", "INSERT"),
        ("DROP TABLE events", "DROP"),
        ("ALTER TABLE events DELETE WHERE 1", "ALTER"),
        ("CREATE TABLE x (a UInt8) ENGINE = Memory", "CREATE"),
        ("SET max_threads = 1", "SET"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT 1; DROP TABLE events", "multiple statements"),
        ("SELECT * FROM url('http://example.com/x', CSV)", "url()"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO OUTFILE"),
    ],
)
def test_sql_refuses_writes_ddl_and_settings(api: tuple[TestClient, Warehouse], sql: str, kind: str) -> None:
    client, warehouse = api
    before = warehouse.query_rows("SELECT count() AS n FROM events")[0]["n"]
    response = client.post("/v1/sql", json={"sql": sql})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "read_only" and body["statement"] == kind
    assert "only read-only SELECT statements are allowed" in body["detail"]
    assert warehouse.query_rows("SELECT count() AS n FROM events")[0]["n"] == before
    assert warehouse.query_rows("SELECT count() AS n FROM system.tables WHERE name = 'events'")[0]["n"] >= 1


def test_readonly_setting_backs_up_the_check(api: tuple[TestClient, Warehouse]) -> None:
    _, warehouse = api
    from clickhouse.errors import QueryError

    assert isinstance(warehouse, ChdbWarehouse)
    session = warehouse.analyst_session(LIMITS)
    try:
        with pytest.raises(QueryError, match="readonly"):
            session.run("CREATE TABLE sneaky (a UInt8) ENGINE = Memory", None, "CSV")
        with pytest.raises(QueryError, match="readonly"):
            session.run("SELECT 1 SETTINGS max_execution_time = 0", None, "CSV")
    finally:
        session.close()


def test_a_failed_query_leaves_nothing_for_the_next_one(api: tuple[TestClient, Warehouse]) -> None:
    from clickhouse.errors import QueryError

    _, warehouse = api
    with pytest.raises(QueryError, match="boom"):
        warehouse.query_rows(
            "SELECT throwIf(number = 70000, 'boom') AS t FROM numbers(100000) SETTINGS max_block_size = 1000"
        )
    assert warehouse.query_rows("SELECT 1 AS ok") == [{"ok": 1}]


def test_statement_check_allows_reads_with_write_words_in_strings(api: tuple[TestClient, Warehouse]) -> None:
    _, warehouse = api
    assert isinstance(warehouse, ChdbWarehouse)
    session = warehouse.analyst_session(LIMITS)
    try:
        assert check_read_only("SELECT 'DROP TABLE x' AS s, replaceAll('a', 'a', 'b');", session) == (
            "SELECT 'DROP TABLE x' AS s, replaceAll('a', 'a', 'b')"
        )
        with pytest.raises(ReadOnlyViolation):
            check_read_only("  -- just a comment", session)
    finally:
        session.close()


def test_readyz_and_freshness(api: tuple[TestClient, Warehouse]) -> None:
    client, _ = api
    assert client.get("/readyz").json()["status"] == "ready"
    fresh = client.get("/v1/freshness", params={"minutes": 60}).json()["rows"][0]
    assert fresh["events"] > 0 and fresh["p99_ms"] is not None
    assert "funnelstream_freshness_ms" in client.get("/metrics").text


def test_variant_breakdown_defaults_to_the_most_common_experiment(api: tuple[TestClient, Warehouse]) -> None:
    client, _ = api
    named = client.get("/v1/funnel", params={**RANGE, "breakdown": "variant", "experiment": "segmentation_tool"})
    default = client.get("/v1/funnel", params={**RANGE, "breakdown": "variant"})
    assert default.status_code == 200
    assert default.json()["rows"] == named.json()["rows"]


def test_report_funnel_prints_a_table_and_writes_html(report: RunReport, tmp_path: Path) -> None:
    page = tmp_path / "funnel.html"
    result = report(
        [
            "report",
            "funnel",
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-25",
            "--breakdown",
            "variant",
            "--html",
            str(page),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "segmentation_tool" in result.output and "control" in result.output and "treatment" in result.output
    assert "image_saved" in result.output
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "treatment" in text
    # The library inline once (offline), and nothing drawn by hand beside it.
    assert text.count(charts.plotly_script()) == 1 and "<svg" not in text.replace(charts.plotly_script(), "")
    figures = embedded_figures(text)
    assert list(figures) == ["funnel-conversion", "funnel-timing", "funnel-trend"]
    conversion = figures["funnel-conversion"]["data"]
    assert {trace["name"] for trace in conversion} >= {"control", "treatment"}
    # The chart draws the printed numbers: every conversion of the table is a bar of its breakdown.
    for trace in conversion:
        assert all(f"{value:.1%}" in result.output for value in trace["y"] if value is not None)


def test_experiment_results_are_served_from_the_warehouse(api: tuple[TestClient, Warehouse]) -> None:
    client, _ = api
    response = client.get("/v1/experiments/segmentation_tool/results")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["experiment_key"] == "segmentation_tool"
    assert set(body["variants"]) == {"control", "treatment"}
    assert {row["variant"] for row in body["exposures"]} <= {"control", "treatment"}
    assert body["srm"] is not None and body["contamination"] is not None
    assert client.get("/v1/experiments/no_such_experiment/results").status_code == 404


def test_funnel_answers_say_whether_late_steps_can_still_come(api: tuple[TestClient, Warehouse]) -> None:
    client, _ = api
    for path in ("/v1/funnel", "/v1/time-to-convert", "/v1/trends"):
        body = client.get(path, params=RANGE).json()
        assert body["complete"] is True and body["complete_at"] == "2026-11-25T01:00:00+00:00", path
    trend = client.get("/v1/trends", params=RANGE).json()["rows"]
    assert trend and all(row["complete"] is True for row in trend)
    # A range that ends now: its window is still open, for the answer and for its last day.
    now = datetime.now(UTC).replace(microsecond=0)
    open_range = {"from": (now - timedelta(days=2)).isoformat(), "to": now.isoformat(), "window": 600}
    for path in ("/v1/funnel", "/v1/time-to-convert", "/v1/trends"):
        body = client.get(path, params=open_range).json()
        assert body["complete"] is False, path
        assert body["complete_at"] == (now + timedelta(seconds=600)).isoformat(), path
    csv = client.get("/v1/trends", params={**open_range, "format": "csv"})
    assert csv.headers["x-complete"] == "false"
    assert client.get("/v1/funnel", params={**RANGE, "format": "csv"}).headers["x-complete"] == "true"


def test_report_funnel_marks_an_open_range_incomplete(report: RunReport, tmp_path: Path) -> None:
    page = tmp_path / "funnel.html"
    now = datetime.now(UTC)
    arguments = ["report", "funnel", "--html", str(page)]
    closed = report([*arguments, "--from", "2026-11-20", "--to", "2026-11-25"])
    assert closed.exit_code == 0, closed.output
    # The embedded library's own text is no part of the report's words.
    words = page.read_text().replace(charts.plotly_script(), "").lower()
    assert "incomplete" not in closed.output and "incomplete" not in words
    end = f"{now:%Y-%m-%dT%H:%M:%S}"
    opened = report([*arguments, "--from", "2026-11-20", "--to", end])
    assert opened.exit_code == 0, opened.output
    assert "incomplete: steps of entries up to" in " ".join(opened.output.split())
    assert "Incomplete: steps of entries up to" in page.read_text()


def test_report_funnel_prints_the_task_time_summary(
    api: tuple[TestClient, Warehouse], report: RunReport, tmp_path: Path
) -> None:
    _, warehouse = api
    start, end = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
    for breakdown in (Breakdown.NONE, Breakdown.VARIANT):
        page = tmp_path / f"{breakdown}.html"
        arguments = ["report", "funnel", "--from", "2026-11-20", "--to", "2026-11-25", "--breakdown", str(breakdown)]
        result = report([*arguments, "--html", str(page)])
        assert result.exit_code == 0, result.output
        summary = queries.task_time_summary(warehouse, start, end, breakdown, "segmentation_tool")
        assert summary and all(row["images"] > 0 for row in summary)
        printed = [[cell for cell in re.split(r"[\s│┃|]+", line) if cell] for line in result.output.splitlines()]
        text = page.read_text()
        for row in summary:
            # The row of this breakdown value in the task-time table: the summary's count and mean.
            expected = [str(row["breakdown"]), str(row["images"]), str(row["saved_images"]), str(row["mean_s"])]
            assert expected in [cells[:4] for cells in printed], (expected, result.output)
            assert f"<td>{row['images']}</td><td>{row['saved_images']}</td><td>{row['mean_s']}</td>" in text
