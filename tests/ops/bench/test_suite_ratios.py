"""``make bench``'s ratios across benchmarks: the stream worker set against the collector's figure
of the same suite run, and a target on the ratio rather than on the figure."""

from __future__ import annotations

import sys
from typing import Any

from ops.bench.suite import Benchmark, Figure, benchmarks, markdown, table_rows

HOST = {"cpu": "Test CPU", "cores": 2, "memory_gib": 24.0, "python": "3.11", "system": "Linux"}

STREAM = Benchmark(
    "stream",
    [sys.executable, "-m", "ops.bench.stream"],
    (
        Figure("events_per_s", "over faust", "faust_ceiling_events_per_s", ratio_target=(">=", 2)),
        Figure("events_per_s", "over collector", "ingest:batch_events_per_s", ratio_target=(">=", 0.3)),
        Figure("events_per_s", "both", "faust_ceiling_events_per_s", (">=", 20_000), (">=", 2)),
    ),
)


def rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["label"]: row for row in table_rows([STREAM], results)}


def test_a_ceiling_from_another_benchmark_of_the_same_run_gives_the_ratio_and_verdict() -> None:
    results = {
        "ingest": {"run": "r1", "figures": {"batch_events_per_s": 100_000}},
        "stream": {"run": "r1", "figures": {"events_per_s": 40_000, "faust_ceiling_events_per_s": 16_000}},
    }
    got = rows(results)
    assert got["over collector"]["ceiling"] == 100_000
    assert got["over collector"]["ratio"] == 0.4
    assert got["over collector"]["met"] is True
    assert got["over collector"]["ceiling_same_run"] is True
    assert got["over collector"]["target"] == "ratio >= 0.3"
    assert got["over faust"]["ratio"] == 2.5
    assert got["over faust"]["met"] is True
    table = markdown(table_rows([STREAM], results), "2026-12-03 23:00 UTC", HOST)
    assert "100,000 (ingest:batch_events_per_s) | 0.4 | ratio >= 0.3 | yes" in table


def test_a_ratio_target_is_judged_on_the_ratio_not_on_the_figure() -> None:
    results = {
        "ingest": {"run": "r1", "figures": {"batch_events_per_s": 200_000}},
        "stream": {"run": "r1", "figures": {"events_per_s": 40_000, "faust_ceiling_events_per_s": 25_000}},
    }
    got = rows(results)
    assert got["over collector"]["ratio"] == 0.2
    assert got["over collector"]["met"] is False
    assert got["over faust"]["met"] is False
    # The figure meets its own target, the ratio does not: missed.
    assert got["both"]["met"] is False
    assert got["both"]["target"] == ">= 20,000; ratio >= 2"


def test_a_ceiling_from_another_run_is_said_so_and_a_missing_one_judges_nothing() -> None:
    results = {
        "ingest": {"run": "r0", "figures": {"batch_events_per_s": 100_000}},
        "stream": {"run": "r1", "figures": {"events_per_s": 40_000}},
    }
    got = rows(results)
    assert got["over collector"]["ceiling_same_run"] is False
    table = markdown(table_rows([STREAM], results), "2026-12-03 23:00 UTC", HOST)
    assert "(ingest:batch_events_per_s, another run)" in table
    # No Faust ceiling in the JSON: no ratio, so the ratio target is neither met nor missed.
    assert got["over faust"]["ratio"] is None
    assert got["over faust"]["met"] is None
    assert got["both"]["met"] is None
    # The collector never ran: nothing to compare with.
    alone = rows({"stream": {"run": "r1", "figures": {"events_per_s": 40_000}}})
    assert alone["over collector"]["ceiling"] is None
    assert alone["over collector"]["met"] is None


def test_the_suite_sets_the_stream_worker_against_faust_and_the_collector() -> None:
    stream = next(b for b in benchmarks(5000, 30) if b.name == "stream")
    names = {b.name for b in benchmarks(5000, 30)}
    ratios = {figure.ceiling: figure.ratio_target for figure in stream.figures if figure.ratio_target}
    assert ratios == {"faust_ceiling_events_per_s": (">=", 2), "ingest:batch_events_per_s": (">=", 0.3)}
    # A cross-benchmark ceiling names a benchmark the suite runs.
    for figure in (f for b in benchmarks(5000, 30) for f in b.figures):
        if figure.ceiling and ":" in figure.ceiling:
            assert figure.ceiling.split(":", 1)[0] in names
