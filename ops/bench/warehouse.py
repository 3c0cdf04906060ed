"""``make bench-warehouse``: loader throughput into chdb and funnel latency; the last line is JSON.

``loader_rows_per_s`` (the loader's decode → Arrow → insert on one core, no Kafka) against
``ceiling_rows_per_s`` (chdb's own INSERT … SELECT of as many rows); ``funnel_ms`` / ``bare_funnel_ms``
(a 5-step, 1 h funnel by variant over 10 million events, via ``GET /v1/funnel`` and as bare SQL;
medians); ``freshness_p99_ms`` (202 → visible in ``events`` at 5,000 events/s, ``funnelstream load --local``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from clickhouse import queries
from clickhouse.api import create_app
from clickhouse.backend import ChdbWarehouse
from clickhouse.loader import EVENT_SCHEMA, INSERT_SETTINGS, Loader, Message
from clickhouse.migrate import migrate
from clickhouse.queries import Breakdown, FunnelRequest
from clickhouse.settings import LoaderConfig, WarehouseSettings
from ops.journeys import JourneySpec, collector_payloads, enriched, journeys

BASE = datetime(2026, 10, 1, tzinfo=UTC)
STEP_TYPES = [str(step) for step in queries.DEFAULT_STEPS]


def _templates() -> list[dict[str, Any]]:
    """One enriched event per funnel step, from the journey generator, seen from a browser."""
    spec = JourneySpec(units=20, start=BASE, pre_exposure_share=0.0, image_save_rate=1.0, score_rate=1.0)
    events = enriched(collector_payloads(journeys(spec, 1), library="funnelstream-js"), 1)
    first = {str(event.event_type): event for event in reversed(events)}
    browser = {
        "page_url": "https://app.example.com/editor",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
        "browser": "Chrome",
        "os": "Linux",
        "device": "Other",
        "locale": "en-US",
        "app_version": "2.3.0",
    }
    return [
        orjson.loads(first[kind].model_copy(update=browser).model_dump_json(exclude_none=True)) for kind in STEP_TYPES
    ]


def _payloads(count: int) -> list[bytes]:
    """Realistic enriched events: a template per step type with fresh ids and times."""
    templates = _templates()
    out = []
    for number in range(count):
        row = dict(templates[number % len(templates)])
        at = (BASE + timedelta(milliseconds=number * 7)).isoformat().replace("+00:00", "Z")
        row.update(
            event_id=str(uuid.uuid4()),
            anonymous_id=f"device-{number % 50_000:06d}",
            input_id=str(uuid.UUID(int=number // 5 + 1)),
        )
        row.update(client_ts=at, received_at=at, event_ts=at, enriched_at=at)
        out.append(orjson.dumps(row))
    return out


def _pin(cores: set[int]) -> None:
    """Every thread of this process onto ``cores``: ``sched_setaffinity(0, …)`` moves only the
    calling thread, and chdb's insert, merge and view threads exist already."""
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cores)
        except OSError:  # the thread ended meanwhile
            continue


def bench_loader(warehouse: ChdbWarehouse, rows: int, batch_rows: int) -> dict[str, float]:
    payloads = _payloads(rows)
    loader = Loader(WarehouseSettings(loader=LoaderConfig(batch_rows=batch_rows)), warehouse)
    batches = [
        [Message("events.enriched", 0, offset, None, payload) for offset, payload in
         enumerate(payloads[start : start + batch_rows], start=start)]
        for start in range(0, rows, batch_rows)
    ]  # fmt: skip
    loader.process(batches[0])  # warm up; not timed
    insert_before = sum(loader.stats.insert_seconds.values())
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch in batches[1:]:
        loader.process(batch)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    inserting = sum(loader.stats.insert_seconds.values()) - insert_before
    loaded = rows - len(batches[0])
    # The ceiling: the same number of rows into the same table, through the same views, with the
    # loader's insert settings, in batches of the same size; only the decoding is left out.
    columns = ", ".join(field.name for field in EVENT_SCHEMA)
    settings = ", ".join(f"{name} = {value}" for name, value in (INSERT_SETTINGS.get("events") or {}).items())
    warehouse.command(f"CREATE TABLE ceiling_source ENGINE = Memory AS SELECT {columns} FROM events LIMIT {loaded}")
    started = time.perf_counter()
    for offset in range(0, loaded, batch_rows):
        count = min(batch_rows, loaded - offset)
        warehouse.command(
            f"INSERT INTO events ({columns}) SELECT {columns} FROM ceiling_source LIMIT {count} OFFSET {offset}"
            + (f" SETTINGS {settings}" if settings else "")
        )
    ceiling = time.perf_counter() - started
    warehouse.command("DROP TABLE ceiling_source")
    return {
        "loader_rows_per_s": loaded / elapsed,
        "ceiling_rows_per_s": loaded / ceiling,
        "loader_rows_per_cpu_s": loaded / cpu,
        "loader_decode_us_per_row": (elapsed - inserting) / loaded * 1e6,
        "loader_insert_us_per_row": inserting / loaded * 1e6,
    }


def generate_events_sql(warehouse: ChdbWarehouse, count: int) -> None:
    """``count`` events over 30 days: images enter at upload and 30% drop out at each later step; and
    one exposure per device."""
    warehouse.command("TRUNCATE TABLE events")
    warehouse.command(
        f"""
        INSERT INTO events (event_id, event_type, schema_version, anonymous_id, input_id, session_id, client_ts,
                            received_at, event_ts, source, funnel_step, tool_id, tool_name, tool_type,
                            inference_id, inference_name, inference_type, experiments, properties, enriched_at)
        SELECT
            generateUUIDv4(number) AS event_id,
            ['image_uploaded', 'tool_selected', 'inference_requested', 'image_saved', 'score_submitted'][step + 1],
            1, concat('device-', toString(image % 200000)), reinterpretAsUUID(toUInt128(image + 1)),
            concat('device-', toString(image % 200000), ':', toString(intDiv(image, 200000))),
            ts, ts, ts, ['web', 'ios'][1 + image % 2], step + 1,
            if(step = 1, 1 + image % 3, NULL),
            if(step = 1, ['rectangle', 'brush', 'segmentation'][1 + image % 3], NULL),
            if(step = 1, ['manual', 'manual', 'ai_assist'][1 + image % 3], NULL),
            if(step = 2, 1 + image % 3, NULL),
            if(step = 2, ['remove_object', 'enhance', 'deblur'][1 + image % 3], NULL),
            if(step = 2, ['inpainting', 'super_resolution', 'deblurring'][1 + image % 3], NULL),
            map('segmentation_tool', if(cityHash64(image % 200000) % 2 = 0, 'control', 'treatment')),
            '{{}}', ts
        FROM
        (
            SELECT number, intDiv(number, 5) AS image, number % 5 AS step,
                   toDateTime64('2026-10-01 00:00:00', 3, 'UTC') + toIntervalSecond(image % 2592000)
                       + toIntervalSecond(step * (20 + cityHash64(image) % 3000)) AS ts
            FROM numbers({count * 3 // 2})
            WHERE step = 0 OR cityHash64(image, step) % 10 < 7
            LIMIT {count}
        )
        """
    )
    # One exposure per device before its first event, in the arm its events carry: the variant
    # breakdown reads arms from exposures (experiment_units), so without them it would time an empty answer.
    warehouse.command(
        """
        INSERT INTO events (event_id, event_type, schema_version, anonymous_id, session_id, client_ts, received_at,
                            event_ts, source, funnel_step, experiment_key, variant, experiments, properties,
                            enriched_at)
        SELECT
            generateUUIDv4(number), 'experiment_exposure', 1, concat('device-', toString(number)),
            concat('device-', toString(number), ':exposure'), ts, ts, ts, 'experiments', 0, 'segmentation_tool',
            arm, map('segmentation_tool', arm), '{"assignment_source": "hash", "phase": 1}', ts
        FROM
        (
            SELECT number, if(cityHash64(number) % 2 = 0, 'control', 'treatment') AS arm,
                   toDateTime64('2026-10-01 00:00:00', 3, 'UTC') AS ts
            FROM numbers(200000)
        )
        """
    )


def bench_funnel(
    warehouse: ChdbWarehouse, settings: WarehouseSettings, repeats: int
) -> tuple[float, float, float, int]:
    start, end = BASE, BASE + timedelta(days=31)
    request = FunnelRequest(start=start, end=end, breakdown=Breakdown.VARIANT, experiment="segmentation_tool")
    sql = queries.load(request.query_name())
    parameters = request.parameters()
    warehouse.query_rows(sql, parameters)  # warm caches once for both
    bare, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        rows = warehouse.query_rows(sql, parameters)
        bare.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    api = []
    app = create_app(settings, warehouse=warehouse, run_loader=False)
    with TestClient(app, headers=settings.read_headers) as client:
        params = {"from": start.isoformat(), "to": end.isoformat(), "breakdown": "variant",
                  "experiment": "segmentation_tool", "window": 3600}  # fmt: skip
        for _ in range(repeats):
            started = time.perf_counter()
            response = client.get("/v1/funnel", params=params)
            api.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            assert [r["units"] for r in response.json()["rows"]] == [r["units"] for r in rows], (
                response.json()["rows"],
                rows,
            )
    return statistics.median(api), statistics.median(bare), statistics.median(cpu), len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loader-rows", type=int, default=210_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--funnel-events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--freshness-rate", type=float, default=5000, help="0 skips the end-to-end run")
    parser.add_argument("--freshness-duration", type=float, default=30)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="fs-bench-warehouse-"))
    result: dict[str, Any] = {}
    try:
        warehouse = ChdbWarehouse(str(workdir / "chdb"), "funnelstream")
        migrate(warehouse)
        all_cores = os.sched_getaffinity(0)
        _pin({min(all_cores)})  # the loader figure is for one core, chdb's threads included
        try:
            loader = bench_loader(warehouse, args.loader_rows, args.batch_rows)
        finally:
            _pin(all_cores)
        for name, value in loader.items():
            result[name] = round(value, 2) if name.endswith("_per_row") else round(value)
        result["loader_batch_rows"] = args.batch_rows
        started = time.perf_counter()
        generate_events_sql(warehouse, args.funnel_events)
        warehouse.command("OPTIMIZE TABLE events FINAL")
        events = warehouse.query_rows("SELECT count() AS n FROM events")[0]["n"]
        result["funnel_dataset_events"] = events
        result["funnel_dataset_build_s"] = round(time.perf_counter() - started, 1)
        settings = WarehouseSettings()
        funnel_ms, bare_ms, cpu_ms, rows = bench_funnel(warehouse, settings, args.repeats)
        result["funnel_ms"] = round(funnel_ms, 1)
        result["bare_funnel_ms"] = round(bare_ms, 1)
        result["bare_funnel_cpu_ms"] = round(cpu_ms, 1)
        result["api_overhead_pct"] = round((funnel_ms - bare_ms) / bare_ms * 100, 1)
        result["funnel_rows"] = rows
        result["cores"] = len(all_cores)
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
        warehouse.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.freshness_rate > 0:
        result.update(_freshness(args.freshness_rate, args.freshness_duration))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


def _freshness(rate: float, duration_s: float) -> dict[str, Any]:
    """``funnelstream load --local``: the four services as processes on topics of their own, the
    simulator's journeys through ``POST /v1/batch``, freshness from each 202 to ``inserted_at``."""
    command = [sys.executable, "-m", "ops.cli", "load", "--local", "--rate", str(rate),
               "--duration", str(duration_s), "--batch-size", "50"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    lines = completed.stdout.strip().splitlines()
    if not lines:
        return {"freshness_error": completed.stderr[-500:]}
    measured: dict[str, Any] = orjson.loads(lines[-1])
    kept = ("rate", "accepted", "accepted_per_s", "visible", "lost", "duplicated")
    return {
        **{f"freshness_{name}": measured[name] for name in kept},
        **{name: value for name, value in measured.items() if name.startswith("freshness_")},
    }


if __name__ == "__main__":
    raise SystemExit(main())
