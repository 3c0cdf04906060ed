"""Hostile clients on the warehouse API's experiment routes (results, plan), on the real app.

The plan route runs an analysis per request: it must refuse an unauthenticated caller before any
work, refuse every out-of-range or non-numeric parameter with a 422 naming it, and answer a strange
experiment key with a 404, never a 5xx.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clickhouse.api import create_app
from clickhouse.backend import open_warehouse
from clickhouse.migrate import migrate
from clickhouse.settings import WarehouseSettings
from funnelstream.settings import ClickHouseConfig

READ_KEY = {"Authorization": "Bearer fs-dev-read-key"}
PLAN = "/v1/experiments/segmentation_tool/plan"
RESULTS = "/v1/experiments/segmentation_tool/results"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = ClickHouseConfig(
        chdb_path=tmp_path_factory.mktemp("experiment-routes") / "chdb", database=f"fs_exp_{uuid.uuid4().hex[:8]}"
    )
    warehouse = open_warehouse(config)
    migrate(warehouse)
    try:
        with TestClient(create_app(WarehouseSettings(clickhouse=config), warehouse=warehouse, run_loader=False)) as c:
            yield c
    finally:
        warehouse.close()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="}])
@pytest.mark.parametrize(("path", "params"), [(PLAN, {"mde": 0.05}), (RESULTS, {})])
def test_experiment_routes_refuse_a_caller_without_the_read_key(
    client: TestClient, headers: dict[str, str], path: str, params: dict[str, float]
) -> None:
    response = client.get(path, params=params, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "mde"),
        ({"mde": "0"}, "mde"),
        ({"mde": "-0.05"}, "mde"),
        ({"mde": "nan"}, "mde"),
        ({"mde": "inf"}, "mde"),
        ({"mde": "1e309"}, "mde"),
        ({"mde": "5%"}, "mde"),
        ({"mde": "0.05", "power": "1"}, "power"),
        ({"mde": "0.05", "power": "nan"}, "power"),
        ({"mde": "0.05", "power": "0.1"}, "power"),
        ({"mde": "0.05", "days": "0"}, "days"),
        ({"mde": "0.05", "days": "1e999"}, "days"),
        ({"mde": "0.05", "days": "-inf"}, "days"),
        ({"mde": "0.05", "days": "x" * 10_000}, "days"),
    ],
)
def test_a_hostile_plan_parameter_is_a_422_naming_it(client: TestClient, params: dict[str, str], field: str) -> None:
    response = client.get(PLAN, params=params, headers=READ_KEY)
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize("key", ["nope", "..%2F..%2Fetc%2Fpasswd", "a" * 5_000, "ключ", "x'; DROP TABLE events; --"])
def test_an_unknown_or_strange_experiment_key_is_a_404(client: TestClient, key: str) -> None:
    for path in (f"/v1/experiments/{key}/plan", f"/v1/experiments/{key}/results"):
        response = client.get(path, params={"mde": 0.05}, headers=READ_KEY)
        assert response.status_code == 404, (path[:80], response.status_code)


def test_a_valid_plan_on_an_empty_warehouse_answers_without_a_server_error(client: TestClient) -> None:
    response = client.get(PLAN, params={"mde": 0.05, "power": 0.9, "days": 365}, headers=READ_KEY)
    assert response.status_code == 200, response.text
    assert response.json()["experiment_key"] == "segmentation_tool"
