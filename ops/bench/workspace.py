"""``make bench-workspace``: the workspace's funnel panels beside the plain funnel; the last line is JSON.

On the events of ``make bench-warehouse`` (10 million by default, its generator), each route a funnel
page draws, called as the page calls it (``GET`` through the warehouse app, ``chart=1``): the plain
5-step funnel (``funnel_ms``), conversion over time, the time-to-convert histogram, drop-off correlation
and paths after drop-off at step 4. Each figure is the median of the runs after one warm-up, the routes
taking turns within a run, with its ratio to ``funnel_ms``; a route the app does not serve, or that
fails (its answer kept under ``errors``), is left out and listed as ``missing``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from clickhouse.api import create_app
from clickhouse.backend import ChdbWarehouse
from clickhouse.migrate import migrate
from clickhouse.settings import WarehouseSettings
from ops.bench.warehouse import BASE, generate_events_sql

BASELINE = "funnel_ms"
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    BASELINE: ("/v1/funnel", {}),
    "over_time_ms": ("/v1/funnel/over-time", {"interval": "day"}),
    "ttc_distribution_ms": ("/v1/funnel/time-to-convert/histogram", {}),
    "correlation_ms": ("/v1/funnel/correlation", {"step": 4}),
    "paths_ms": ("/v1/funnel/paths-after-dropoff", {"step": 4}),
}
"""Figure → the route a page calls and its own parameters besides the page's state."""
MIN_REPEATS = 3


def _progress(message: str) -> None:
    sys.stderr.write(f"bench-workspace: {message}\n")
    sys.stderr.flush()


def page_state() -> dict[str, Any]:
    """What every panel of the funnel page sends: the data's whole month, the default steps, a 1 h window."""
    return {"from": BASE.isoformat(), "to": (BASE + timedelta(days=31)).isoformat(), "window": 3600, "chart": 1}


def served(client: TestClient, errors: dict[str, str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The routes that answer (the warm-up); one not there yet (404) is left out, one that fails
    (a query limit, say) is left out with its answer in ``errors``: a figure, not a crash."""
    out = {}
    for figure, (path, fixed) in ROUTES.items():
        response = client.get(path, params={**page_state(), **fixed})
        if response.status_code == 404 and figure != BASELINE:
            _progress(f"{path} is not served; {figure} left out")
            continue
        if response.status_code != 200:
            if figure == BASELINE:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:300]}")
            errors[figure] = f"HTTP {response.status_code} {response.text[:300]}"
            _progress(f"{path} failed; {figure} left out: {errors[figure]}")
            continue
        out[figure] = (path, fixed)
    return out


def bench_routes(client: TestClient, repeats: int) -> tuple[dict[str, float], dict[str, int], dict[str, str]]:
    """Median milliseconds per route, each answer's row count, and the routes that failed."""
    errors: dict[str, str] = {}
    routes = served(client, errors)
    times: dict[str, list[float]] = {figure: [] for figure in routes}
    rows: dict[str, int] = {}
    for run in range(repeats):
        for figure, (path, fixed) in routes.items():
            started = time.perf_counter()
            response = client.get(path, params={**page_state(), **fixed})
            times[figure].append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:300]}")
            rows[figure] = len(response.json()["rows"])
        _progress(f"run {run + 1}/{repeats}: " + ", ".join(f"{f} {t[-1]:.0f}" for f, t in times.items()))
    return {figure: statistics.median(values) for figure, values in times.items()}, rows, errors


def figures(medians: dict[str, float], rows: dict[str, int], errors: dict[str, str]) -> dict[str, Any]:
    """Each route's median and its ratio to the plain funnel's; ``missing``: the routes without one."""
    out: dict[str, Any] = {}
    baseline = medians[BASELINE]
    for figure, value in medians.items():
        out[figure] = round(value, 1)
        if figure != BASELINE:
            out[f"{figure.removesuffix('_ms')}_ratio"] = round(value / baseline, 2)
    out["rows"] = rows
    out["missing"] = [figure for figure in ROUTES if figure not in medians]
    out["errors"] = errors
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000, help="benchmark events to generate")
    parser.add_argument("--repeats", type=int, default=5, help=f"timed runs per route (at least {MIN_REPEATS})")
    args = parser.parse_args(argv)
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats: at least {MIN_REPEATS}")

    workdir = Path(tempfile.mkdtemp(prefix="fs-bench-workspace-"))
    result: dict[str, Any] = {}
    try:
        warehouse = ChdbWarehouse(str(workdir / "chdb"), "funnelstream")
        try:
            migrate(warehouse)
            started = time.perf_counter()
            generate_events_sql(warehouse, args.events)
            warehouse.command("OPTIMIZE TABLE events FINAL")
            result["dataset_events"] = warehouse.query_rows("SELECT count() AS n FROM events")[0]["n"]
            result["dataset_build_s"] = round(time.perf_counter() - started, 1)
            _progress(f"{result['dataset_events']} events in {result['dataset_build_s']} s")
            settings = WarehouseSettings()
            with TestClient(create_app(settings, warehouse=warehouse, run_loader=False)) as client:
                client.headers.update(settings.read_headers)
                result.update(figures(*bench_routes(client, args.repeats)))
        finally:
            warehouse.close()
        result["repeats"] = args.repeats
        result["cores"] = len(os.sched_getaffinity(0))
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return result


if __name__ == "__main__":
    main()
