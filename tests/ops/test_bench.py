"""``make bench``'s table: figures found in each benchmark's JSON, set against ceilings and targets;
the experiments benchmark as a smoke run at a few hundred units, the workspace benchmark at a few thousand events."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ops.bench import experiments, workspace
from ops.bench.suite import README_END, README_START, Benchmark, Figure, markdown, table_rows, update_readme

HOST = {"cpu": "Test CPU", "cores": 2, "memory_gib": 24.0, "python": "3.11", "system": "Linux"}

STREAM = Benchmark(
    "stream",
    [sys.executable, "-m", "ops.bench.stream"],
    (
        Figure("events_per_s", "events/s", "ceiling_events_per_s", (">=", 20_000)),
        Figure("rss_mb", "RSS", None, ("<=", 300)),
        Figure("jobs.enhance_x2", "nested", None, None),
    ),
)


def test_each_figure_gets_its_ceiling_ratio_and_verdict() -> None:
    results = {
        "stream": {
            "figures": {
                "events_per_s": 15_000,
                "ceiling_events_per_s": 60_000,
                "rss_mb": 250,
                "jobs": {"enhance_x2": 1.5},
            }
        }
    }
    rows = {row["figure"]: row for row in table_rows([STREAM], results)}
    assert rows["events_per_s"]["ceiling"] == 60_000
    assert rows["events_per_s"]["ratio"] == 0.25
    assert rows["events_per_s"]["met"] is False
    assert rows["rss_mb"]["met"] is True
    assert rows["jobs.enhance_x2"]["value"] == 1.5
    assert rows["jobs.enhance_x2"]["met"] is None
    assert rows["events_per_s"]["command"] == "python -m ops.bench.stream"


def test_a_failed_benchmark_shows_as_failed_not_as_a_number() -> None:
    rows = table_rows([STREAM], {"stream": {"error": "exit 1: broker not reachable"}})
    assert all(row["value"] is None for row in rows)
    table = markdown(rows, "2026-11-26 12:00 UTC", HOST)
    assert "failed: exit 1: broker not reachable" in table
    assert "Test CPU, 2 cores" in table


def test_the_readme_table_is_replaced_between_its_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n## Performance\n{README_START}\nold table\n{README_END}\n\n## Next\nkept\n")
    assert update_readme(readme, "| new | table |\n")
    text = readme.read_text()
    assert "old table" not in text
    assert f"{README_START}\n| new | table |\n{README_END}" in text
    assert text.startswith("# Title") and text.endswith("## Next\nkept\n")
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, "| x |\n")
    assert plain.read_text() == "no markers\n"


def test_the_experiments_benchmark_reports_both_sizes_beside_their_ceiling() -> None:
    figures = experiments.main(
        ["--units", "1200", "--small-units", "300", "--chunk-units", "500", "--assignments", "200", "--bootstrap", "20"]
    )
    large, small = figures["runs"]["1m"], figures["runs"]["100k"]
    assert (large["units"], small["units"]) == (1200, 300)
    assert large["images"] > 2 * 1200
    assert figures["analysis_s_1m_units"] == large["analysis_s"] > 0
    assert figures["analysis_ratio_1m_100k"] == round(large["analysis_s"] / small["analysis_s"], 2)
    assert figures["ceiling_s_1m"] == large["ceiling_s"] > 0
    assert {"experiment_units", "experiment_events", "experiment_task_durations"} <= set(large["query_s"])
    assert {"hash_assignments_per_s", "sticky_assignments_per_s", "load_s", "peak_rss_mib"} <= set(figures)


def test_the_workspace_benchmark_times_every_served_panel_route_beside_the_funnel() -> None:
    figures = workspace.main(["--events", "3000", "--repeats", "3"])
    assert figures["funnel_ms"] > 0 and figures["rows"]["funnel_ms"] == 5
    assert figures["dataset_events"] >= 3000 and figures["errors"] == {}
    timed = [figure for figure in workspace.ROUTES if figure not in figures["missing"]]
    assert timed[0] == "funnel_ms"
    for figure in timed[1:]:
        ratio = figures[f"{figure.removesuffix('_ms')}_ratio"]
        assert ratio == pytest.approx(figures[figure] / figures["funnel_ms"], abs=0.011)
