"""Hostile queries on the fixed query routes (``/v1/funnel`` and the others) on a real chdb warehouse.

A wide funnel ran on the loader's own session under its lock, with no memory or time limit: while
it ran, ``/readyz`` and the loader's inserts waited for it. Now every client-reachable query runs on
an analyst session: the loader and ``/readyz`` keep their pace, a limit hit is a 4xx naming it, and
one query more than the pool holds is a 429 with ``Retry-After``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from clickhouse.api import analyst_limits, create_app
from clickhouse.backend import AnalystEngine, Warehouse, open_warehouse
from clickhouse.migrate import migrate
from clickhouse.settings import SqlLimits, WarehouseSettings
from funnelstream.settings import ClickHouseConfig

READ_KEY = {"Authorization": "Bearer fs-dev-read-key"}
# Enough generated events that a funnel over all of them runs for seconds, not milliseconds.
EVENTS = 8_000_000
WIDE_FUNNEL = {
    "from": "2025-01-01T00:00:00Z",
    "to": "2027-01-01T00:00:00Z",
    "breakdown": "day",
    "window": 86_400,
}
WIDE_AT_ONCE = 3
STEPS = "['image_uploaded', 'tool_selected', 'inference_requested', 'image_saved', 'score_submitted']"
FILL = f"""
INSERT INTO events (event_id, event_type, anonymous_id, input_id, session_id, client_ts, received_at,
                    event_ts, enriched_at, source, properties)
SELECT reinterpretAsUUID(toUInt128(number)), {STEPS}[number % 5 + 1], toString(intDiv(number, 5) % 1000),
       reinterpretAsUUID(toUInt128(intDiv(number, 5))), '',
       toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 100) AS ts, ts, ts, ts,
       'web', ''
FROM numbers({EVENTS})
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    root = tmp_path_factory.mktemp("warehouse-routes")
    warehouse = open_warehouse(ClickHouseConfig(chdb_path=root / "chdb", database=f"fs_routes_{uuid.uuid4().hex[:8]}"))
    migrate(warehouse)
    warehouse.command(FILL)
    warehouse.command("CREATE TABLE loader_probe (n UInt64) ENGINE = MergeTree ORDER BY n")
    yield warehouse
    warehouse.close()


@contextmanager
def serve(engine: Warehouse, **limits: Any) -> Iterator[TestClient]:
    config = ClickHouseConfig(chdb_path=Path(getattr(engine, "path", "")), database=engine.database)
    settings = WarehouseSettings(clickhouse=config, sql=SqlLimits(**limits))
    with TestClient(create_app(settings, warehouse=engine, run_loader=False), headers=READ_KEY) as client:
        yield client


@contextmanager
def observer(engine: Warehouse) -> Iterator[Callable[[], int]]:
    """Counts running funnels from a session of its own, so it never waits on the loader's lock."""
    assert isinstance(engine, AnalystEngine)
    session = engine.analyst_session(analyst_limits(WarehouseSettings()))

    def running() -> int:
        query = (
            "SELECT count() FROM system.processes WHERE query LIKE '%funnel_units(%' "
            "AND query NOT LIKE '%system.processes%'"
        )
        return int(session.check(query)[0])

    try:
        yield running
    finally:
        session.close()


def _wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def _readyz(client: TestClient) -> float:
    started = time.perf_counter()
    assert client.get("/readyz").status_code == 200
    return time.perf_counter() - started


def _loader_round_trip(engine: Warehouse) -> float:
    """A loader's batch: an insert on the loader's session, then a read of what it wrote."""
    started = time.perf_counter()
    marker = time.time_ns()
    engine.insert_arrow("loader_probe", pa.table({"n": pa.array([marker], pa.uint64())}))
    rows = engine.query_rows("SELECT count() AS c FROM loader_probe WHERE n = {m:UInt64}", {"m": marker})
    assert rows[0]["c"] == 1
    return time.perf_counter() - started


def test_a_wide_funnel_delays_neither_readyz_nor_the_loader(engine: Warehouse) -> None:
    # One thread: the funnel runs longer, so the measurements fall inside it.
    with serve(engine, max_seconds=120, max_threads=1) as client, observer(engine) as funnels_running:
        baseline_ready = max(_readyz(client) for _ in range(3))
        baseline_load = max(_loader_round_trip(engine) for _ in range(3))
        # A client sends a few wide funnels at once, within the concurrency limit.
        with ThreadPoolExecutor(WIDE_AT_ONCE) as pool:
            wide = [pool.submit(client.get, "/v1/funnel", params=WIDE_FUNNEL) for _ in range(WIDE_AT_ONCE)]
            _wait_until(lambda: funnels_running() >= 1)
            # Three of each. The first is surely taken while the funnels run (a wait behind them
            # shows there); the middle one judges the rest, as one sample can stall on a shared machine.
            during_ready = [_readyz(client) for _ in range(3)]
            during_load = [_loader_round_trip(engine) for _ in range(3)]
            still_running = funnels_running()
            answers = [future.result() for future in wide]
    for during, baseline in ((during_ready, baseline_ready), (during_load, baseline_load)):
        assert during[0] <= baseline + 1.0 and sorted(during)[1] <= baseline + 1.0, (during, baseline)
    assert still_running >= 1, "the funnels ended before the measurements; they measured nothing"
    assert all(answer.status_code == 200 and answer.json()["rows"] for answer in answers)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/funnel", WIDE_FUNNEL),
        ("/v1/time-to-convert", WIDE_FUNNEL),
        ("/v1/trends", {"from": WIDE_FUNNEL["from"], "to": WIDE_FUNNEL["to"]}),
    ],
)
def test_a_fixed_route_over_its_time_limit_is_a_400_naming_it(engine: Warehouse, path: str, params: Any) -> None:
    with serve(engine, max_seconds=0.2) as client:
        answer = client.get(path, params=params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "limit_exceeded" and body["limit"] == "time", body
    assert "FS_SQL__MAX_SECONDS" in body["detail"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/funnel", WIDE_FUNNEL),
        ("/v1/task-times", {"from": WIDE_FUNNEL["from"], "to": WIDE_FUNNEL["to"], "view": "summary"}),
    ],
)
def test_a_fixed_route_over_its_memory_limit_is_a_400_naming_it(engine: Warehouse, path: str, params: Any) -> None:
    with serve(engine, max_memory_bytes=1 << 20) as client:
        answer = client.get(path, params=params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "limit_exceeded" and body["limit"] == "memory", body
    assert "FS_SQL__MAX_MEMORY_BYTES" in body["detail"]


def test_a_fixed_routes_answer_over_the_result_bytes_is_a_400_not_a_cut_one(engine: Warehouse) -> None:
    params = {"from": WIDE_FUNNEL["from"], "to": WIDE_FUNNEL["to"], "view": "images", "limit": 100_000}
    with serve(engine, max_result_bytes=64 << 10) as client:
        answer = client.get("/v1/task-times", params=params)
        small = client.get("/v1/task-times", params={**params, "limit": 10})
    assert answer.status_code == 400, answer.text[:500]
    body = answer.json()
    assert body["error"] == "limit_exceeded" and body["limit"] == "result", body
    assert "FS_SQL__MAX_RESULT_BYTES" in body["detail"]
    assert small.status_code == 200 and small.json()["row_count"] == 10


def test_a_fixed_route_over_the_concurrency_limit_is_429_with_retry_after(engine: Warehouse) -> None:
    with serve(engine, max_concurrent=1, max_threads=1) as client, observer(engine) as funnels_running:
        with ThreadPoolExecutor(1) as pool:
            wide = pool.submit(client.get, "/v1/funnel", params=WIDE_FUNNEL)
            _wait_until(lambda: funnels_running() >= 1)
            refused = client.get("/v1/scores")
            still_running = funnels_running()
            answer = wide.result()
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1 and "FS_SQL__MAX_CONCURRENT" in refused.json()["detail"]
        assert still_running >= 1, "the funnel ended before the second request; it measured nothing"
        assert answer.status_code == 200, answer.text
        assert client.get("/v1/scores").status_code == 200
