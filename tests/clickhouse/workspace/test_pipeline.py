"""The pipeline page's answers on a real warehouse: data as of, per-stage lag, the latest QA results."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from clickhouse.api import create_app
from clickhouse.backend import Warehouse
from clickhouse.loader import Message, decode_events
from clickhouse.settings import WarehouseSettings
from clickhouse.workspace import pipeline
from funnelstream.contract import EnrichedEvent, EventType
from ops.heartbeat import make_heartbeat
from tests.helpers import reference_pipeline
from tests.helpers.heartbeats import enriched
from tests.helpers.warehouse import enriched as event_at
from tests.helpers.warehouse import load as load_events
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

EMITTED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(shared_chdb_path: Path) -> Iterator[tuple[TestClient, Warehouse]]:
    warehouse, config = open_test_warehouse("chdb", shared_chdb_path)
    settings = WarehouseSettings(clickhouse=config)
    app = create_app(settings, warehouse=warehouse, run_loader=False)
    with TestClient(app, headers=settings.read_headers) as test_client:
        yield test_client, warehouse
    drop_and_close(warehouse)


def test_no_heartbeat_is_stale_and_has_no_time(warehouse: Warehouse) -> None:
    fresh = pipeline.data_as_of(warehouse, EMITTED)
    assert fresh.as_of is None and fresh.age_s is None and fresh.heartbeats == 0
    assert fresh.stale


def test_data_as_of_is_the_newest_heartbeat_and_ages_past_the_qa_limit(warehouse: Warehouse) -> None:
    load_events(
        warehouse,
        [enriched(make_heartbeat("test", EMITTED - timedelta(seconds=30))), enriched(make_heartbeat("test", EMITTED))],
    )
    fresh = pipeline.data_as_of(warehouse, EMITTED + timedelta(seconds=10))
    assert fresh.as_of == EMITTED and fresh.heartbeats == 2
    assert fresh.age_s == pytest.approx(10, abs=0.01)
    assert not fresh.stale and fresh.stale_after_s == pipeline.stale_after_s()
    late = pipeline.data_as_of(warehouse, EMITTED + timedelta(seconds=pipeline.stale_after_s() + 1))
    assert late.stale and late.as_of == EMITTED


def test_as_of_route_answers_json_csv_chart_and_runnable_sql(client: tuple[TestClient, Warehouse]) -> None:
    test_client, warehouse = client
    beat = make_heartbeat("test")
    load_events(warehouse, [enriched(beat)])
    response = test_client.get("/v1/pipeline/as-of", params={"chart": "1", "steps": "ignored page state"})
    assert response.status_code == 200, response.text
    body = response.json()
    (row,) = body["rows"]
    assert beat.received_at is not None
    assert datetime.fromisoformat(body["as_of"]) == beat.received_at.replace(
        microsecond=beat.received_at.microsecond // 1000 * 1000
    )
    assert row["as_of"] == body["as_of"] and row["stale"] is False and body["stale"] is False
    assert 0 <= row["age_s"] < 60
    assert warehouse.query_rows(body["sql"])[0]["heartbeats"] == 1
    assert body["figure"]["data"][0]["x"] == [row["age_s"]]
    csv = test_client.get("/v1/pipeline/as-of", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "as_of,age_s,stale,stale_after_s,heartbeats,last_latency_s"
    assert test_client.get("/v1/pipeline/as-of", params={"format": "xml"}).status_code == 422


def _load_inserted(warehouse: Warehouse, stored: list[tuple[EnrichedEvent, datetime]]) -> None:
    """Events with the insertion time the loader's database would have stamped, so lags are exact."""
    messages = [Message("e", 0, i, None, event.model_dump_json().encode()) for i, (event, _) in enumerate(stored)]
    table, rejected = decode_events(messages)
    assert not rejected
    inserted = pa.array([at for _, at in stored], pa.timestamp("ms", tz="UTC"))
    warehouse.insert_arrow("events", table.append_column("inserted_at", inserted))


def _planted_lags(seed: int = 11) -> list[tuple[EnrichedEvent, datetime]]:
    rng = random.Random(seed)
    stored = []
    for i in range(240):
        received = EMITTED - timedelta(milliseconds=rng.randint(0, 90 * 60_000))
        enriched_at = received + timedelta(milliseconds=rng.choice([rng.randint(0, 400), rng.randint(0, 20_000)]))
        inserted = enriched_at + timedelta(milliseconds=rng.randint(200, 3_000))
        event = event_at(EventType.IMAGE_UPLOADED, received, f"device-{i % 17}", input_id=uuid.uuid4())
        source = rng.choice(["web", "ios", "partner <b>x</b>"])
        stored.append((event.model_copy(update={"enriched_at": enriched_at, "source": source}), inserted))
    # Visible after `now`: not yet counted.
    late = event_at(EventType.IMAGE_SAVED, EMITTED, "device-late", input_id=uuid.uuid4())
    stored.append((late.model_copy(update={"source": "web"}), EMITTED + timedelta(seconds=1)))
    return stored


def _frame(stored: list[tuple[EnrichedEvent, datetime]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "source": event.source,
                "received_at": pd.Timestamp(event.received_at),
                "enriched_at": pd.Timestamp(event.enriched_at),
                "inserted_at": pd.Timestamp(at),
            }
            for event, at in stored
        ]
    )


@pytest.mark.parametrize("minutes", [1, 30, 60, 10080])
def test_lag_per_stage_and_source_equals_the_reference(warehouse: Warehouse, minutes: int) -> None:
    stored = _planted_lags()
    _load_inserted(warehouse, stored)
    result = pipeline.lag(warehouse, minutes, EMITTED)
    expected = reference_pipeline.pipeline_lag(_frame(stored), EMITTED, minutes)
    assert result.rows == expected
    assert result.extra == {"minutes": minutes}
    assert warehouse.query_rows(result.sql) == result.rows
    if minutes >= 60:
        assert {row["source"] for row in result.rows} == {"(all)", "web", "ios", "partner <b>x</b>"}
        assert [row["stage"] for row in result.rows][::4] == list(reference_pipeline.STAGES)


def test_lag_refuses_minutes_outside_a_week(warehouse: Warehouse) -> None:
    for minutes in (0, 10081):
        with pytest.raises(ValueError, match="minutes"):
            pipeline.lag(warehouse, minutes, EMITTED)


def _qa_row(check: str, status: str, run_at: datetime, value: float = 0.0) -> dict[str, object]:
    return {
        "run_id": str(uuid.uuid4()),
        "run_at": run_at,
        "window_from": run_at - timedelta(hours=1),
        "window_to": run_at,
        "check_name": check,
        "severity": "error",
        "status": status,
        "threshold": 0.01,
        "value": value,
        "subject": "web",
        "affected": 3,
        "total": 100,
        "failing_subjects": int(status == "fail"),
        "details": "{}",
        "duration_ms": 12.5,
    }


def _load_qa(warehouse: Warehouse, rows: list[dict[str, object]]) -> None:
    stamp = pa.timestamp("ms", tz="UTC")
    types = {"run_at": stamp, "window_from": stamp, "window_to": stamp, "affected": pa.uint64(), "total": pa.uint64()}
    table = pa.Table.from_pylist(rows)
    for name, kind in {**types, "failing_subjects": pa.uint32()}.items():
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    warehouse.insert_arrow("qa_results", table)


def test_qa_latest_is_each_checks_newest_result_failures_first(warehouse: Warehouse) -> None:
    earlier, later = EMITTED - timedelta(hours=2), EMITTED - timedelta(minutes=5)
    _load_qa(
        warehouse,
        [
            _qa_row("orphan_steps", "fail", earlier, 0.2),
            _qa_row("orphan_steps", "pass", later),
            _qa_row("duplicates", "pass", earlier),
            _qa_row("duplicates", "fail", later, 0.5),
            _qa_row("late_events", "error", earlier),
        ],
    )
    result = pipeline.qa_latest(warehouse, EMITTED)
    assert [(row["check_name"], row["status"]) for row in result.rows] == [
        ("late_events", "error"),
        ("duplicates", "fail"),
        ("orphan_steps", "pass"),
    ]
    assert [row["age_s"] for row in result.rows] == [7200.0, 300.0, 300.0]
    assert warehouse.query_rows(result.sql) == result.rows
    assert pipeline.qa_latest(warehouse, EMITTED).rows[1]["value"] == 0.5


def test_lag_and_qa_routes_answer_json_csv_and_chart(client: tuple[TestClient, Warehouse]) -> None:
    test_client, warehouse = client
    clock = datetime.now(UTC)
    now = clock.replace(microsecond=clock.microsecond // 1000 * 1000)
    _load_inserted(
        warehouse,
        [(event_at(EventType.IMAGE_UPLOADED, now - timedelta(seconds=3), "d", input_id=uuid.uuid4()), now)],
    )
    _load_qa(warehouse, [_qa_row("duplicates", "fail", now, 0.5), _qa_row("orphan_steps", "pass", now)])
    lag = test_client.get("/v1/pipeline/lag", params={"minutes": "5", "chart": "1", "from": "page state"})
    assert lag.status_code == 200, lag.text
    body = lag.json()
    assert body["minutes"] == 5 and body["row_count"] == 6
    assert [row["p50_ms"] for row in body["rows"] if row["stage"] == "end to end"] == [3000.0, 3000.0]
    assert len(body["figure"]["data"]) == 3 and "FROM events FINAL" in body["sql"]
    for minutes in ("0", "10081", "x"):
        refused = test_client.get("/v1/pipeline/lag", params={"minutes": minutes})
        assert refused.status_code == 422 and "minutes" in refused.text
    qa = test_client.get("/v1/pipeline/qa", params={"chart": "1"})
    assert qa.status_code == 200, qa.text
    assert [row["check_name"] for row in qa.json()["rows"]] == ["duplicates", "orphan_steps"]
    assert qa.json()["figure"]["data"][0]["y"] == [0, 1, 1]
    csv = test_client.get("/v1/pipeline/qa", params={"format": "csv"}).text.splitlines()
    assert csv[0].startswith("check_name,severity,status,") and len(csv) == 3


def test_pipeline_panels_are_the_pipeline_routes() -> None:
    panels = pipeline.pipeline_panels()
    assert [panel.id for panel in panels] == ["freshness", "lag", "qa"]
    routes = {getattr(r, "path", "") for r in pipeline.router.routes}
    assert {panel.route.split("?")[0] for panel in panels} <= routes
