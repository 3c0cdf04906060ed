"""Benchmark: assignment rate and analysis time on a large simulated experiment.

    python -m funnelstream.experiments.bench [--units 100000] [--assignments 200000]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from funnelstream.experiments.analysis import AnalysisConfig, analyze
from funnelstream.experiments.assignment import Assigner, hash_assignment
from funnelstream.experiments.definitions import Definitions, Experiment, Variant
from funnelstream.experiments.simulate import SimulationSpec, simulate
from funnelstream.experiments.store import MemoryAssignmentStore


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--assignments", type=int, default=200_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)

    experiment = Experiment(
        key="segmentation_tool",
        status="running",
        variants=[Variant(key="control", weight=0.5), Variant(key="treatment", weight=0.5)],
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

    events, _ = simulate(SimulationSpec(units=args.units, task_time_factor=0.7, save_conversion_lift=0.05), 1)
    started = time.perf_counter()
    analyze(events, experiment, AnalysisConfig(bootstrap_resamples=args.bootstrap))
    analysis_s = time.perf_counter() - started
    result = {
        "hash_assignments_per_s": round(args.assignments / hash_s),
        "sticky_assignments_per_s": round(sticky_n / sticky_s),
        "analysis_units": args.units,
        "analysis_events": len(events),
        "analysis_bootstrap_resamples": args.bootstrap,
        "analysis_s": round(analysis_s, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
