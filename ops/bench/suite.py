"""``make bench``: every benchmark in turn, one results file and one table.

Each benchmark is its own command printing one JSON object on its last line; this runs them one
after the other on an otherwise idle machine, keeps every figure in ``bench/results.json``, and
writes ``bench/results.md``: the headline figures with the ceiling measured in the same run, their
ratio and the target. A ceiling is a figure of the same benchmark or, named ``benchmark:figure``,
of another one of the same suite run (the stream worker beside the collector); the table says
when that figure comes from another run. The README's Performance section is the same table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The suite runs the repository's own benchmarks and rewrites its README: a checkout, never an install.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


@dataclass(frozen=True)
class Figure:
    key: str
    """Dotted path into the benchmark's JSON."""
    label: str
    ceiling: str | None = None
    """The figure, measured in the same run, that this one is set against: a dotted path into the
    same benchmark's JSON, or ``benchmark:path`` into another benchmark's."""
    target: tuple[str, float] | None = None
    """(">=" or "<=", value) from the issue that asked for this figure."""
    ratio_target: tuple[str, float] | None = None
    """(">=" or "<=", value) the ratio to the ceiling must meet."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    command: list[str]
    figures: tuple[Figure, ...]

    @property
    def shown_command(self) -> str:
        return " ".join(self.command).replace(sys.executable, "python")


def _module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


def benchmarks(load_rate: float, load_duration_s: float) -> list[Benchmark]:
    return [
        Benchmark(
            "ingest",
            _module("ops.bench.ingest"),
            (
                Figure("batch_events_per_s", "collector events/s, 500-event batches", "ceiling_events_per_s",
                       (">=", 100_000)),
                Figure("single_requests_per_s", "collector single-event requests/s", None, (">=", 10_000)),
                Figure("single_p99_ms", "collector p99 ms at 5,000 requests/s", None, ("<=", 10)),
                Figure("rss_mb", "collector RSS MB under load", None, ("<=", 200)),
            ),
        ),
        Benchmark(
            "stream",
            _module("ops.bench.stream"),
            (
                Figure("events_per_s", "stream worker events/s, one core, the collector's blocks",
                       "ceiling_events_per_s", (">=", 20_000)),
                Figure("events_per_s", "stream worker events/s over the bare Faust agent on single-event records",
                       "faust_ceiling_events_per_s", ratio_target=(">=", 2)),
                Figure("events_per_s", "stream worker events/s over the collector's batch events/s",
                       "ingest:batch_events_per_s", ratio_target=(">=", 0.3)),
                Figure("faust_ceiling_events_per_s", "bare Faust agent events/s, one core, single-event records"),
                Figure("mix.events_per_record_median", "stream input: events per record, median"),
                Figure("rss_mb", "stream worker RSS MB, 100k open sessions", None, ("<=", 300)),
                Figure("open_sessions", "stream worker open sessions at the RSS reading", None, (">=", 100_000)),
            ),
        ),
        Benchmark(
            "warehouse",
            _module("ops.bench.warehouse"),
            (
                Figure("loader_rows_per_s", "loader rows/s into chdb, one core", "ceiling_rows_per_s",
                       (">=", 200_000)),
                Figure("funnel_ms", "5-step funnel by variant, 10M events, via API (ms)", "bare_funnel_ms",
                       ("<=", 500)),
                Figure("freshness_p99_ms", "freshness p99 ms at 5,000 events/s", None, ("<=", 2_000)),
            ),
        ),
        Benchmark(
            "workspace",
            _module("ops.bench.workspace"),
            (
                Figure("funnel_ms", "workspace: plain 5-step funnel, 10M events, via API (ms)"),
                Figure("over_time_ratio", "workspace: conversion over time, × the funnel", None, ("<=", 2)),
                Figure("ttc_distribution_ratio", "workspace: time-to-convert histogram, × the funnel", None,
                       ("<=", 2)),
                Figure("correlation_ratio", "workspace: drop-off correlation, × the funnel", None, ("<=", 2)),
                Figure("paths_ratio", "workspace: paths after drop-off, × the funnel", None, ("<=", 2)),
            ),
        ),
        Benchmark(
            "load",
            _module("ops.cli", "load", "--local", "--rate", f"{load_rate:g}", "--duration",
                    f"{load_duration_s:g}", "--batch-size", "100"),
            (
                Figure("accepted_per_s", f"whole pipeline: accepted events/s offered {load_rate:g}/s", "rate"),
                Figure("freshness_p50_ms", "whole pipeline: 202 → visible, p50 ms"),
                Figure("freshness_p95_ms", "whole pipeline: 202 → visible, p95 ms"),
                Figure("freshness_p99_ms", "whole pipeline: 202 → visible, p99 ms", None, ("<=", 2_000)),
            ),
        ),
        Benchmark(
            "inference",
            _module("ops.bench.inference"),
            (
                Figure("overhead_p50_ms", "inference overhead per job p50 ms (256 px)", None, ("<=", 30)),
                Figure("jobs_per_s.enhance_x2", "inference enhance x2 jobs/s, 1024 px"),
                Figure("sam_vit_b_cpu_s", "SAM vit_b embedding, CPU s"),
            ),
        ),
        Benchmark(
            "experiments",
            _module("ops.bench.experiments"),
            (
                Figure("hash_assignments_per_s", "experiment assignments/s (hash)"),
                Figure("sticky_assignments_per_s", "experiment assignments/s (sticky store)"),
                Figure("analysis_s_100k_units", "experiment analysis of 100k units, s", "ceiling_s_100k"),
                Figure("analysis_s_1m_units", "experiment analysis of 1M units, 3M images, s", "ceiling_s_1m"),
                Figure("analysis_ratio_1m_100k", "experiment analysis, 1M units over 100k", None, ("<=", 12)),
            ),
        ),
        Benchmark(
            "qa",
            _module("ops.bench.qa"),
            (Figure("all_checks_day_s", "every QA check over a day of 2M events, s"),),
        ),
    ]  # fmt: skip


def _dig(figures: dict[str, Any], path: str) -> Any:
    value: Any = figures
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def run_benchmark(benchmark: Benchmark, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        completed = subprocess.run(
            benchmark.command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s", "wall_s": round(time.monotonic() - started, 1)}
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = {"wall_s": round(time.monotonic() - started, 1), "load_average_before": load_before}
    try:
        result["figures"] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result["error"] = f"exit {completed.returncode}, no JSON last line; stderr: {completed.stderr[-1500:]}"
    if completed.returncode != 0 and "error" not in result:
        result["error"] = f"exit {completed.returncode}: {completed.stderr[-1500:]}"
    return result


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:,.2f}"
    if isinstance(value, int | float):
        return f"{value:,.0f}"
    return str(value)


def _meets(value: Any, target: tuple[str, float] | None) -> bool | None:
    if target is None or not isinstance(value, int | float):
        return None
    operator, bound = target
    return value >= bound if operator == ">=" else value <= bound


def _ceiling(name: str, ceiling: str, results: dict[str, Any]) -> tuple[Any, bool]:
    """The ceiling's value and whether the suite measured it in the same run as benchmark
    ``name``'s figures (a partial run keeps the other benchmarks' last figures)."""
    other, _, path = ceiling.rpartition(":")
    if not other:
        return _dig(results.get(name, {}).get("figures", {}), path), True
    source = results.get(other, {})
    run = results.get(name, {}).get("run")
    return _dig(source.get("figures", {}), path), run is not None and source.get("run") == run


def _target_text(figure: Figure) -> str | None:
    parts = []
    if figure.target:
        parts.append(f"{figure.target[0]} {figure.target[1]:,g}")
    if figure.ratio_target:
        parts.append(f"ratio {figure.ratio_target[0]} {figure.ratio_target[1]:,g}")
    return "; ".join(parts) or None


def table_rows(chosen: list[Benchmark], results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for benchmark in chosen:
        outcome = results.get(benchmark.name, {})
        figures = outcome.get("figures", {})
        for figure in benchmark.figures:
            value = _dig(figures, figure.key)
            ceiling, same_run = _ceiling(benchmark.name, figure.ceiling, results) if figure.ceiling else (None, True)
            ratio = round(value / ceiling, 3) if isinstance(value, int | float) and ceiling else None
            verdicts = []
            if figure.target:
                verdicts.append(_meets(value, figure.target))
            if figure.ratio_target:
                verdicts.append(_meets(ratio, figure.ratio_target))
            # Missed as soon as one target is missed; met only when every target asked is known.
            met = False if False in verdicts else (True if verdicts and None not in verdicts else None)
            rows.append(
                {
                    "benchmark": benchmark.name,
                    "command": benchmark.shown_command,
                    "figure": figure.key,
                    "label": figure.label,
                    "value": value,
                    "ceiling": ceiling,
                    "ceiling_figure": figure.ceiling,
                    "ceiling_same_run": same_run,
                    "ratio": ratio,
                    "target": _target_text(figure),
                    "met": met,
                    "error": outcome.get("error"),
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]], measured_at: str, host: dict[str, Any]) -> str:
    header = (
        f"Measured {measured_at} on {host['cpu']}, {host['cores']} cores, {host['memory_gib']} GiB "
        f"(Python {host['python']}, {host['system']}) by `make bench`, one benchmark at a time.\n\n"
        "| figure | value | ceiling (same run) | ratio | target | met | command |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in rows:
        if row["error"] and row["value"] is None:
            value = f"failed: {str(row['error']).splitlines()[0][:80]}"
        else:
            value = _number(row["value"])
        ceiling = "—"
        if row["ceiling_figure"]:
            another = "" if row.get("ceiling_same_run", True) else ", another run"
            ceiling = f"{_number(row['ceiling'])} ({row['ceiling_figure']}{another})"
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(
            f"| {row['label']} | {value} | {ceiling} | {row['ratio'] if row['ratio'] is not None else '—'} | "
            f"{row['target'] or '—'} | {met} | `{row['command']}` |"
        )
    return header + "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> bool:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    before, rest = text.split(README_START, 1)
    _, after = rest.split(README_END, 1)
    readme.write_text(f"{before}{README_START}\n{table}{README_END}{after}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", default=[], help="Run only this benchmark (repeatable).")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench")
    parser.add_argument("--load-rate", type=float, default=5000.0)
    parser.add_argument("--load-duration", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="Seconds one benchmark may take.")
    parser.add_argument("--no-readme", action="store_true", help="Leave README.md as it is.")
    parser.add_argument("--render-only", action="store_true", help="Rewrite the table from results.json; run nothing.")
    args = parser.parse_args(argv)

    every = benchmarks(args.load_rate, args.load_duration)
    unknown = set(args.only) - {b.name for b in every}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {[b.name for b in every]}")
    chosen = [] if args.render_only else [b for b in every if not args.only or b.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    # A partial run (--only) updates its benchmarks and keeps the others' last figures.
    previous = json.loads(results_file.read_text()) if results_file.exists() else {}
    results: dict[str, Any] = dict(previous.get("benchmarks", {}))
    # Marks the benchmarks of this invocation: a ceiling from another benchmark counts as the
    # same run only when both carry it.
    run = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for benchmark in chosen:
        print(f"running {benchmark.name}: {benchmark.shown_command}", file=sys.stderr, flush=True)
        results[benchmark.name] = {
            "command": benchmark.shown_command,
            "run": run,
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            **run_benchmark(benchmark, args.timeout),
        }
        if "error" in results[benchmark.name]:
            print(f"  {benchmark.name} failed: {results[benchmark.name]['error'][:500]}", file=sys.stderr)
    host = machine()
    shown = [b for b in every if b.name in results]
    # After a partial run (--only) the table mixes runs: say when the oldest and newest were made.
    times = sorted(str(results[b.name].get("measured_at", "")) for b in shown if results[b.name].get("measured_at"))
    measured_at = (
        times[0] if times and times[0] == times[-1] else f"between {times[0]} and {times[-1]}" if times else "?"
    )
    rows = table_rows(shown, results)
    document = {"measured_at": measured_at, "machine": host, "benchmarks": results, "table": rows}
    results_file.write_text(json.dumps(document, indent=2) + "\n")
    table = markdown(rows, measured_at, host)
    (args.out / "results.md").write_text(table)
    if not args.no_readme:
        update_readme(PROJECT_ROOT / "README.md", table)
    print(table, file=sys.stderr)
    summary = {
        "results": str(results_file),
        "benchmarks": len(chosen),
        "failed": [b.name for b in chosen if "error" in results[b.name]],
        "targets_met": sum(1 for row in rows if row["met"]),
        "targets_missed": [row["figure"] for row in rows if row["met"] is False],
    }
    print(json.dumps(summary))
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
