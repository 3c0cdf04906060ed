"""Benchmark: assignment rate and analysis time on a large simulated experiment.

    python -m ops.bench.experiments [--units 100000] [--assignments 200000]

The analysis runs as in production: the simulated events are loaded into a scratch embedded
warehouse (chdb) and read through the experiment's named queries; ``analysis_s`` is the queries and
the statistics, ``load_s`` the insert. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from clickhouse.backend import open_warehouse
from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.warehouse import analyze_warehouse
from clickhouse.migrate import migrate
from funnelstream.experiments.definitions import Definitions, Experiment
from funnelstream.settings import ClickHouseConfig
from ingest.experiments.assignment import Assigner, hash_assignment
from ingest.experiments.store import MemoryAssignmentStore
from ops.journeys import JourneySpec, simulate, warehouse_rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--assignments", type=int, default=200_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)

    experiment = Experiment.model_validate(
        {
            "key": "segmentation_tool",
            "status": "running",
            "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        }
    )
    started = time.perf_counter()
    for i in range(args.assignments):
        hash_assignment(experiment, f"device-{i}")
    hash_s = time.perf_counter() - started

    definitions = Definitions(version=1, experiments=[experiment])
    assigner = Assigner(lambda: definitions, MemoryAssignmentStore())
    sticky_n = args.assignments // 4
    started = time.perf_counter()
    for i in range(sticky_n):
        assigner.assign_running(f"device-{i}", user_id=f"user-{i}")
    sticky_s = time.perf_counter() - started

    events, _ = simulate(JourneySpec(units=args.units, task_time_factor=0.7, save_conversion_lift=0.05), 1)
    with tempfile.TemporaryDirectory(prefix="funnelstream-bench-") as scratch:
        warehouse = open_warehouse(ClickHouseConfig(chdb_path=Path(scratch) / "chdb"))
        try:
            migrate(warehouse)
            started = time.perf_counter()
            warehouse.insert_arrow("events", warehouse_rows(events, experiment.key))
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            analyze_warehouse(warehouse, experiment, AnalysisConfig(bootstrap_resamples=args.bootstrap))
            analysis_s = time.perf_counter() - started
        finally:
            warehouse.close()
    result = {
        "hash_assignments_per_s": round(args.assignments / hash_s),
        "sticky_assignments_per_s": round(sticky_n / sticky_s),
        "analysis_units": args.units,
        "analysis_events": len(events),
        "analysis_bootstrap_resamples": args.bootstrap,
        "load_s": round(load_s, 3),
        "analysis_s": round(analysis_s, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
