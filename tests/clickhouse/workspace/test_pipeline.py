"""The pipeline page's answers on a real warehouse: data as of, per-stage lag, the latest QA results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clickhouse.api import create_app
from clickhouse.backend import Warehouse
from clickhouse.settings import WarehouseSettings
from clickhouse.workspace import pipeline
from ops.heartbeat import make_heartbeat
from tests.helpers.heartbeats import enriched
from tests.helpers.warehouse import load as load_events
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

EMITTED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _with_pipeline_routes(app: FastAPI) -> FastAPI:
    # The warehouse app includes these routes itself once the pipeline page is wired in.
    if not any(getattr(r, "path", "") == "/v1/pipeline/as-of" for r in app.routes):
        app.include_router(pipeline.router)
    return app


@pytest.fixture
def client(shared_chdb_path: Path) -> Iterator[tuple[TestClient, Warehouse]]:
    warehouse, config = open_test_warehouse("chdb", shared_chdb_path)
    settings = WarehouseSettings(clickhouse=config)
    app = _with_pipeline_routes(create_app(settings, warehouse=warehouse, run_loader=False))
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
