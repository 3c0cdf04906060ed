"""Task time in the workspace: the histogram, daily trend, slowest images and image timeline queries
equal their pandas references (tests/helpers/reference_task_time.py) on adversarial clickstreams,
and their routes answer with rows, runnable SQL, CSV and a figure, refusing hostile parameters."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, note, settings

from clickhouse.api import create_app
from clickhouse.backend import Warehouse
from clickhouse.settings import WarehouseSettings
from clickhouse.workspace import task_time_routes
from clickhouse.workspace.task_time_routes import Dimension, TaskTimeRange, TrendDimension, task_time_panels
from funnelstream.settings import ClickHouseConfig
from tests.helpers import reference_task_time as ref
from tests.helpers.adversarial_events import EXPERIMENT, FROM, TO, Dataset, datasets, describe, input_id_of, load
from tests.helpers.adversarial_events import truncate_all as empty
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

PROPERTY = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
SPAN = TaskTimeRange(FROM, TO, EXPERIMENT)
READ_KEY = {"Authorization": "Bearer fs-dev-read-key"}


@pytest.fixture(scope="module")
def warehouse(shared_chdb_path: Path) -> Iterator[Warehouse]:
    opened, _ = open_test_warehouse("chdb", shared_chdb_path)
    yield opened
    drop_and_close(opened)


def _seconds(value: Any) -> float | None:
    return None if value is None or value != value else round(float(value), 3)


@PROPERTY
@given(dataset=datasets(max_images=10))
def test_task_time_queries_equal_the_reference(warehouse: Warehouse, dataset: Dataset) -> None:
    note(describe(dataset))
    empty(warehouse)
    load(warehouse, dataset)
    images = ref.task_time_images(dataset.events, FROM, TO, EXPERIMENT)
    for dimension in get_args(Dimension):
        rows = task_time_routes.histogram(warehouse, SPAN, dimension).rows
        got = {(str(row["group"]), int(row["bin"])): int(row["images"]) for row in rows}
        assert got == ref.histogram(images, dimension), dimension
        for row in rows:
            assert row["dimension"] == dimension
            assert (row["bin_start_s"], row["bin_end_s"]) == ((0, 1) if row["bin"] == 0 else
                                                              (2 ** (row["bin"] - 1), 2 ** row["bin"]))  # fmt: skip
    for dimension in get_args(TrendDimension):
        rows = task_time_routes.daily(warehouse, SPAN, dimension).rows
        got_daily = {(str(row["day"]), str(row["group"])): row for row in rows}
        expected = ref.daily(images, dimension)
        assert set(got_daily) == set(expected), dimension
        for key, want in expected.items():
            row = got_daily[key]
            assert (int(row["images"]), int(row["saved_images"])) == (want["images"], want["saved_images"]), key
            for name in ("mean_s", "p50_s", "p90_s"):
                # Means of millisecond times may sit on a rounding tie; the quantiles are values of the data.
                assert _seconds(row[name]) == (None if want[name] is None else pytest.approx(want[name], abs=1.1e-3))
    slow = task_time_routes.slowest(warehouse, SPAN, 5).rows
    assert [(str(row["input_id"]), float(row["seconds"])) for row in slow] == ref.slowest(images, 5)
    by_tool = task_time_routes.slowest(warehouse, SPAN, 100, tool="brush").rows
    assert [str(row["input_id"]) for row in by_tool] == [i for i, _ in ref.slowest(images, 100, tool="brush")]
    image = input_id_of(0)
    timeline = task_time_routes.image_timeline(warehouse, image, 1000).rows
    got_timeline = [(round(row["event_ts"].timestamp() * 1000), str(row["event_type"])) for row in timeline]
    assert got_timeline == ref.timeline(dataset.events, str(image))


@pytest.fixture
def client(warehouse: Warehouse) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.warehouse = SimpleNamespace(reader=warehouse)
    app.include_router(task_time_routes.router)
    with TestClient(app) as test_client:
        yield test_client


@settings(PROPERTY, max_examples=8)
@given(dataset=datasets(max_images=6))
def test_routes_answer_rows_sql_csv_and_figure(warehouse: Warehouse, client: TestClient, dataset: Dataset) -> None:
    empty(warehouse)
    load(warehouse, dataset)
    state = {"from": FROM.isoformat(), "to": TO.isoformat()}
    for path, params in (
        ("/v1/task-time/histogram", {"dimension": "tool"}),
        ("/v1/task-time/histogram", {"dimension": "variant"}),
        ("/v1/task-time/daily", {"dimension": "tool"}),
        ("/v1/task-time/slowest", {"limit": 3}),
        (f"/v1/images/{input_id_of(0)}/timeline", {}),
    ):
        body = client.get(path, params={**state, **params, "chart": 1}).json()
        assert body["row_count"] == len(body["rows"]) and body["figure"]["data"] is not None, path
        # The SQL shown runs as is and gives the same rows.
        assert len(warehouse.query_rows(body["sql"])) == len(body["rows"]), path
        text = client.get(path, params={**state, **params, "format": "csv"}).text
        assert list(csv.DictReader(io.StringIO(text))) == [
            {key: "" if value is None else str(value) for key, value in row.items()} for row in body["rows"]
        ], path


def test_the_variant_defaults_to_the_ranges_top_experiment(warehouse: Warehouse, client: TestClient) -> None:
    empty(warehouse)
    state = {"from": FROM.isoformat(), "to": TO.isoformat()}
    body = client.get("/v1/task-time/histogram", params={**state, "dimension": "variant"}).json()
    assert body["experiment"] == "" and body["rows"] == []
    asked = client.get("/v1/task-time/histogram", params={**state, "dimension": "variant", "experiment": "x"}).json()
    assert asked["experiment"] == "x" and "'x'" in asked["sql"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/images/not-a-uuid/timeline", {}, "input_id"),
        ("/v1/images/00000000-0000-0000-0000-000000000001%27%3B--/timeline", {}, "input_id"),
        ("/v1/task-time/histogram", {"dimension": "browser"}, "dimension"),
        ("/v1/task-time/daily", {"dimension": "day"}, "dimension"),
        ("/v1/task-time/slowest", {"limit": 0}, "limit"),
        ("/v1/task-time/slowest", {"limit": 10**9}, "limit"),
        ("/v1/task-time/slowest", {"tool": "x" * 201}, "tool"),
        ("/v1/task-time/histogram", {"experiment": "x" * 201}, "experiment"),
        ("/v1/task-time/daily", {"from": "yesterday"}, "from"),
        ("/v1/task-time/slowest", {"format": "xml"}, "format"),
    ],
)
def test_a_hostile_parameter_is_a_422_naming_it(
    client: TestClient, path: str, params: dict[str, Any], field: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}


def test_panels_name_the_routes_and_quote_an_image_id() -> None:
    panels = task_time_panels({})
    assert [p.id for p in panels] == ["tt-tool", "tt-variant", "tt-daily", "tt-slowest"]
    assert panels[1].route == "/v1/task-time/histogram?dimension=variant"
    hostile = task_time_panels({"input_id": "../../v1/sql?x=1"})[-1]
    assert hostile.id == "tt-timeline" and hostile.route == "/v1/images/..%2F..%2Fv1%2Fsql%3Fx%3D1/timeline"


def test_the_warehouse_app_serves_the_task_time_routes(warehouse: Warehouse) -> None:
    """On the real app (read key, its 422 handler, its analyst reader)."""
    app = create_app(
        WarehouseSettings(clickhouse=ClickHouseConfig(database=warehouse.database)),
        warehouse=warehouse,
        run_loader=False,
    )
    if not any(getattr(r, "path", "") == "/v1/task-time/histogram" for r in app.routes):
        app.include_router(task_time_routes.router)
    with TestClient(app) as client:
        assert client.get("/v1/task-time/histogram").status_code == 401
        for path in ("/v1/task-time/histogram", "/v1/task-time/daily", "/v1/task-time/slowest"):
            response = client.get(path, headers=READ_KEY, params={"chart": 1})
            assert response.status_code == 200, response.text
        bad = client.get("/v1/images/<script>/timeline", headers=READ_KEY)
        assert bad.status_code == 422 and "input_id" in bad.text
        assert bad.headers["content-type"] == "application/json"
