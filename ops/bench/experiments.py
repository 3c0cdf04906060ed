"""Benchmark: assignment rate, and the full experiment analysis at 100k and 1M units.

    python -m ops.bench.experiments [--units 1000000] [--small-units 100000] [--assignments 200000]

Each size runs as in production: simulated journeys (three images per unit on average after
exposure, one before it, inference failures) are inserted chunk by chunk into a scratch embedded
warehouse (chdb) of its own, and the shipped experiment is analysed through ``analyze_warehouse``
(its named queries, every metric, CUPED, bootstrap quantiles, lift over time). Beside it, in the
same warehouse, the ceiling: one plain GROUP BY per unit over the same events, and a numpy sort of
as many durations as there are images. Memory stays bounded by the chunk size. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clickhouse.backend import Warehouse, open_warehouse
from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.warehouse import analyze_warehouse
from clickhouse.migrate import migrate
from clickhouse.queries import QUERIES_DIR
from funnelstream.experiments.definitions import Definitions, Experiment, load_definitions
from funnelstream.experiments.settings import DEFAULT_DEFINITIONS
from funnelstream.settings import ClickHouseConfig
from ingest.experiments.assignment import Assigner, hash_assignment
from ingest.experiments.store import MemoryAssignmentStore
from ops.journeys import JourneySpec, simulate, warehouse_rows

EXPERIMENT_KEY = "segmentation_tool"
IMAGES_PER_UNIT_EXTRA = 2.0
"""Each unit edits 1 + Poisson(2) images after its exposure: three million images for a million units."""
PRE_PERIOD_IMAGES = 1.0
"""And Poisson(1) images before it, at its own speed and save propensity: CUPED's covariate."""
CEILING_QUERY = """
SELECT anonymous_id, count() AS events, countIf(event_type = 'image_saved') AS saves, sum(score) AS scores
FROM events
GROUP BY anonymous_id
"""


@dataclass
class TimedReads:
    """The warehouse's ``query_df`` with the seconds each named query took (the profile of a run)."""

    warehouse: Warehouse
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def query_df(self, sql: str, parameters: Any = None, settings: Any = None) -> pd.DataFrame:
        started = time.perf_counter()
        try:
            return self.warehouse.query_df(sql, parameters, settings)
        finally:
            self.seconds[_query_name(sql)] += time.perf_counter() - started


def _query_name(sql: str) -> str:
    for path in sorted(QUERIES_DIR.glob("*.sql")):
        if path.read_text() == sql:
            return path.stem
    return "other"


def _progress(line: str) -> None:
    """Where a long run is, on stderr: stdout's last line stays the JSON."""
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def shipped_experiment() -> Experiment:
    return next(e for e in load_definitions(DEFAULT_DEFINITIONS).experiments if e.key == EXPERIMENT_KEY)


def assignment_rates(experiment: Experiment, assignments: int) -> dict[str, int]:
    started = time.perf_counter()
    for i in range(assignments):
        hash_assignment(experiment, f"device-{i}")
    hash_s = time.perf_counter() - started
    definitions = Definitions(version=1, experiments=[experiment])
    assigner = Assigner(lambda: definitions, MemoryAssignmentStore())
    sticky_n = max(1, assignments // 4)
    started = time.perf_counter()
    for i in range(sticky_n):
        assigner.assign_running(f"device-{i}", user_id=f"user-{i}")
    sticky_s = time.perf_counter() - started
    return {
        "hash_assignments_per_s": round(assignments / hash_s),
        "sticky_assignments_per_s": round(sticky_n / sticky_s),
    }


def load(warehouse: Warehouse, units: int, chunk_units: int) -> dict[str, float]:
    """Insert ``units`` units' journeys chunk by chunk; each chunk its own ids, seed and salt."""
    generate_s = load_s = 0.0
    events = images = 0
    for chunk, first in enumerate(range(0, units, chunk_units)):
        started = time.perf_counter()
        spec = JourneySpec(
            units=min(chunk_units, units - first),
            experiment_key=EXPERIMENT_KEY,
            id_prefix=f"c{chunk}-",
            images_per_unit_extra=IMAGES_PER_UNIT_EXTRA,
            task_time_factor=0.7,
            save_conversion_lift=0.05,
            completions=True,
            pre_period_images=PRE_PERIOD_IMAGES,
            save_propensity_sigma=0.5,
            failure_rate=0.02,
        )
        frame, _ = simulate(spec, 1 + chunk)
        rows = warehouse_rows(frame, EXPERIMENT_KEY, salt=chunk)
        events += len(frame)
        images += int(frame["input_id"].nunique())
        del frame
        generate_s += time.perf_counter() - started
        started = time.perf_counter()
        warehouse.insert_arrow("events", rows)
        load_s += time.perf_counter() - started
        del rows
        _progress(f"{first + spec.units} units loaded: generate {generate_s:.1f} s, insert {load_s:.1f} s")
    return {"events": events, "images": images, "generate_s": generate_s, "load_s": load_s}


def run_size(experiment: Experiment, units: int, chunk_units: int, config: AnalysisConfig) -> dict[str, Any]:
    """Load ``units`` units into a scratch warehouse, analyse them, and measure the ceiling there."""
    with tempfile.TemporaryDirectory(prefix="funnelstream-bench-") as scratch:
        warehouse = open_warehouse(ClickHouseConfig(chdb_path=Path(scratch) / "chdb"))
        try:
            migrate(warehouse)
            loaded = load(warehouse, units, chunk_units)
            reads = TimedReads(warehouse)
            started = time.perf_counter()
            analyze_warehouse(reads, experiment, config)
            analysis_s = time.perf_counter() - started
            _progress(f"{units} units analysed in {analysis_s:.1f} s: {dict(reads.seconds)}")
            started = time.perf_counter()
            warehouse.query_df(CEILING_QUERY)
            group_by_s = time.perf_counter() - started
        finally:
            warehouse.close()
    durations = np.random.default_rng(0).lognormal(4.0, 0.6, int(loaded["images"]))
    started = time.perf_counter()
    np.sort(durations)
    sort_s = time.perf_counter() - started
    queries_s = sum(reads.seconds.values())
    return {
        "units": units,
        "events": loaded["events"],
        "images": loaded["images"],
        "generate_s": round(loaded["generate_s"], 3),
        "load_s": round(loaded["load_s"], 3),
        "analysis_s": round(analysis_s, 3),
        "queries_s": round(queries_s, 3),
        "statistics_s": round(analysis_s - queries_s, 3),
        "query_s": {name: round(s, 3) for name, s in sorted(reads.seconds.items(), key=lambda kv: -kv[1])},
        "ceiling_group_by_s": round(group_by_s, 3),
        "ceiling_sort_s": round(sort_s, 3),
        "ceiling_s": round(group_by_s + sort_s, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=1_000_000, help="the large run's exposed units")
    parser.add_argument("--small-units", type=int, default=100_000, help="the small run's exposed units")
    parser.add_argument("--chunk-units", type=int, default=40_000, help="units generated and inserted at once")
    parser.add_argument("--assignments", type=int, default=200_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)

    experiment = shipped_experiment()
    result: dict[str, Any] = assignment_rates(experiment, args.assignments)
    config = AnalysisConfig(bootstrap_resamples=args.bootstrap)
    small = run_size(experiment, args.small_units, args.chunk_units, config)
    large = run_size(experiment, args.units, args.chunk_units, config)
    result |= {
        "analysis_s_100k_units": small["analysis_s"],
        "analysis_s_1m_units": large["analysis_s"],
        "analysis_ratio_1m_100k": round(large["analysis_s"] / small["analysis_s"], 2),
        "ceiling_s_1m": large["ceiling_s"],
        "analysis_over_ceiling_1m": round(large["analysis_s"] / large["ceiling_s"], 1),
        "ceiling_s_100k": small["ceiling_s"],
        "analysis_bootstrap_resamples": args.bootstrap,
        "load_s": large["load_s"],
        "runs": {"100k": small, "1m": large},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
