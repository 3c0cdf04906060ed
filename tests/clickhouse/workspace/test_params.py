"""FunnelParams through the warehouse app: the filters reach the funnel, and every bad parameter is a
422 naming it before any query runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clickhouse.api import create_app
from clickhouse.loader import Message, decode_events
from clickhouse.settings import WarehouseSettings
from ops.journeys import clickstream
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

RANGE = {"from": "2020-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def client(shared_chdb_path: Path) -> Iterator[TestClient]:
    warehouse, config = open_test_warehouse("chdb", shared_chdb_path)
    data = clickstream(images=60, devices=15, seed=5)
    messages = [Message("e", 0, i, None, e.model_dump_json().encode()) for i, e in enumerate(data.deliveries)]
    warehouse.insert_arrow("events", decode_events(messages)[0])
    settings = WarehouseSettings(clickhouse=config)
    with TestClient(create_app(settings, warehouse=warehouse, run_loader=False), headers=settings.read_headers) as c:
        yield c
    drop_and_close(warehouse)


def _units(answer: Any) -> list[int]:
    assert answer.status_code == 200, answer.text
    return [row["units"] for row in answer.json()["rows"]]


def test_a_filter_that_keeps_everything_answers_as_no_filter(client: TestClient) -> None:
    plain = _units(client.get("/v1/funnel", params=RANGE))
    assert plain and plain[0] > 0
    assert _units(client.get("/v1/funnel", params={**RANGE, "tool": "no-such-tool"}))[0] == plain[0]
    assert _units(client.get("/v1/funnel", params={**RANGE, "source": "no-such-source"})) == []
    timing = client.get("/v1/time-to-convert", params={**RANGE, "mode": "strict", "size": "small"})
    assert timing.status_code == 200, timing.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"variant": "control"}, "experiment"),
        ({"size": "huge"}, "size"),
        ({"tool": "x" * 201}, "tool"),
        ({"experiment": "x" * 201}, "experiment"),
        ({"steps": "image_uploaded,clicked"}, "steps"),
        ({"window": "0"}, "window"),
        ({"mode": "sideways"}, "mode"),
        ({"breakdown": "colour"}, "breakdown"),
    ],
)
def test_a_bad_funnel_parameter_is_a_422_naming_it(client: TestClient, params: dict[str, str], field: str) -> None:
    for route in ("/v1/funnel", "/v1/time-to-convert"):
        answer = client.get(route, params={**RANGE, **params})
        assert answer.status_code == 422, (route, answer.text)
        assert field in answer.text, (route, answer.text)
